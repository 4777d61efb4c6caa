"""Image files and pixel helpers shared by the converter and the evaluator (numpy + OpenCV).
Resizing is the node's own rule, style_transfer_ros.model_runtime.resize."""
import math
from pathlib import Path

import cv2
import numpy as np
from style_transfer_ros.model_runtime import resize

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
PSNR_CAP_DB = 100.0


def list_images(folder, limit=None):
    """Image files in `folder` and its subfolders, sorted by path so runs pick the same ones."""
    paths = sorted(p for p in Path(folder).rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f'no images in {folder}')
    return paths[:limit] if limit else paths


def load_image(path, longest_side=None):
    """RGB uint8 [H, W, 3], optionally resized so its longest side is `longest_side`."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f'cannot read image {path}')
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return resize_longest(rgb, longest_side) if longest_side else rgb


def resize_longest(image, longest_side):
    """Keep the aspect ratio; round each side to at least 1 pixel."""
    height, width = image.shape[:2]
    scale = longest_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return resize(image, size[1], size[0])


def save_image(path, rgb):
    """Write float or uint8 RGB (clipped to 0..255)."""
    pixels = np.clip(np.asarray(rgb, np.float32), 0, 255).round().astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))


def psnr(a, b, peak=255.0):
    """PSNR in dB of two 0..255 images; PSNR_CAP_DB when identical, NaN when either has NaN."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if not math.isfinite(mse):
        return float('nan')
    if mse == 0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10 * math.log10(peak * peak / mse))
