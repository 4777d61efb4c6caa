"""Halos: rings of luminance (or colour) locked to strong photo edges.

One rule for the evaluation's `halo` figure and the training's `loss_network.halo_loss`: both
read the same rings around the photo's strong edges (`edge_rings`), so training against halos
lowers the figure that judges them. Grey levels; 0 for the photo itself.
"""
import cv2
import numpy as np

RADIUS = 4
EDGE_PERCENTILE = 95
EDGE_MARGIN = 8
MIN_LEVEL_WEIGHT = 0.05  # a ring pixel needs this much 'far' weight to have a local level
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
CHROMA = (np.array([-0.1687, -0.3313, 0.5], np.float32),  # Cb, Cr of JPEG's YCbCr
          np.array([0.5, -0.4187, -0.0813], np.float32))


def luminance(image):
    """Y = 0.299 R + 0.587 G + 0.114 B of an RGB image, float32."""
    return np.asarray(image, np.float32) @ LUMA


def edge_rings(photo_luminance, radius=RADIUS):
    """Rings along the photo's strong edges, [2 * (radius + 1), H, W] float32: per side
    (brighter, then darker than the nearest edge pixel) its 'far' band (radius..2 radius px
    from the edge), then one ring per distance bin k = 1..radius.

    Strong edges: the top 5 % of the Sobel magnitude of the Gaussian-smoothed (sigma 1)
    luminance, 8 px away from the border."""
    smooth = cv2.GaussianBlur(np.asarray(photo_luminance, np.float32), (0, 0), 1)
    magnitude = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    inner = np.zeros(magnitude.shape, bool)
    inner[EDGE_MARGIN:-EDGE_MARGIN, EDGE_MARGIN:-EDGE_MARGIN] = True
    rings = np.zeros((2 * (radius + 1),) + magnitude.shape, np.float32)
    if not inner.any():
        return rings
    edges = magnitude >= max(np.percentile(magnitude[inner], EDGE_PERCENTILE), 1e-3)
    distance, labels = cv2.distanceTransformWithLabels(
        (~edges).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    edge_level = np.zeros(labels.max() + 1, np.float32)
    edge_level[labels[edges]] = smooth[edges]
    brighter = smooth > edge_level[labels]
    for index, side in enumerate((brighter, ~brighter)):
        side = side & inner & ~edges
        far = (side & (distance > radius) & (distance <= 2 * radius)).astype(np.float32)
        levelled = side & (level_weight(far, radius) > MIN_LEVEL_WEIGHT)
        base = index * (radius + 1)
        rings[base] = far
        for k in range(1, radius + 1):
            rings[base + k] = levelled & (distance > k - 1) & (distance <= k)
    return rings


def level_weight(far, radius=RADIUS):
    """How much 'far' band lies around each pixel (the Gaussian, sigma radius, of its mask)."""
    return cv2.GaussianBlur(far, (0, 0), radius)


def halo_figure(output_luminance, photo_luminance, radius=RADIUS):
    """The halo figure of one image: the output's luminance is matched to the photo's mean and
    standard deviation; deviation = output Y - photo Y, minus its local level on the same side
    in the far band (a Gaussian-weighted mean, sigma radius); the figure is the mean over sides
    and distance bins of |mean deviation in the ring|. Texture not locked to edges averages
    out; a glow, a dark or bright ring, a smeared edge does not."""
    y_in = np.asarray(photo_luminance, np.float32)
    y_out = np.asarray(output_luminance, np.float32)
    y_out = (y_out - y_out.mean()) / max(float(y_out.std()), 1e-6) * y_in.std() + y_in.mean()
    deviation = y_out - y_in
    rings = edge_rings(y_in, radius)
    profile = []
    for base in (0, radius + 1):
        far = rings[base]
        level = cv2.GaussianBlur(deviation * far, (0, 0), radius) / np.maximum(
            level_weight(far, radius), 1e-3)
        for ring in rings[base + 1:base + radius + 1].astype(bool):
            if ring.any():
                profile.append(abs(float((deviation - level)[ring].mean())))
    return round(float(np.mean(profile)), 4) if profile else 0.0  # no float dust for the photo


def gaussian_kernel(sigma):
    """OpenCV's Gaussian kernel for float images and this sigma (ksize = round(8 sigma + 1)|1)."""
    size = int(round(sigma * 8 + 1)) | 1
    return cv2.getGaussianKernel(size, sigma, cv2.CV_32F)[:, 0]


def batch_rings(content, radius=RADIUS):
    """edge_rings of each image of a [B, H, W, 3] RGB batch, as [B, H, W, rings]."""
    return np.stack([edge_rings(luminance(image), int(radius)).transpose(1, 2, 0)
                     for image in content])
