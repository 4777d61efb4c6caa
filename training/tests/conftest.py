"""Puts training/ on sys.path so `import style_training` works from the repo root, and
provides small synthetic data."""
import os
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'


@pytest.fixture
def content_dir(tmp_path):
    """Six smooth random 48x64 JPEGs (smooth so VGG features are image-like)."""
    folder = tmp_path / 'content'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        small = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
        image = cv2.resize(small, (64, 48), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f'{index}.jpg'), np.clip(image, 0, 255).astype(np.uint8))
    return folder


@pytest.fixture
def style_paths(tmp_path):
    """Two distinct synthetic style images: stripes and checkers."""
    y, x = np.mgrid[:64, :64]
    stripes = np.stack([(x // 4 % 2) * 255, np.full_like(x, 40), (1 - x // 4 % 2) * 200], -1)
    checkers = np.stack([((x // 8 + y // 8) % 2) * 230] * 3, -1)
    paths = []
    for name, image in (('stripes', stripes), ('checkers', checkers)):
        path = tmp_path / f'{name}.png'
        cv2.imwrite(str(path), image.astype(np.uint8))
        paths.append(str(path))
    return paths
