"""Image transformation networks (raw RGB 0..255 in and out) and the Fritz .h5 loader.

'fritz' and 'fritz_small' follow Johnson et al. as laid out by fritzlabs/fritz-models, so their
.h5 checkpoints load. 'efficient' keeps that encoder/decoder shape but spends its multiply-adds at
1/4 resolution in depthwise-separable blocks and upsamples by resize + convolution (no
depth-to-space, whose block grid shows and flickers).
"""
import json

import h5py
import keras
import numpy as np
import tensorflow as tf
from keras import layers

ARCHITECTURES = ('fritz', 'fritz_small', 'efficient')
TOTAL_STRIDE = 4  # two stride-2 convolutions
EPSILON = 1e-3  # as the Fritz InstanceNormalization: (x - mean) / (std + epsilon)


@keras.saving.register_keras_serializable(package='style_training')
class InstanceNorm(layers.Layer):
    """Instance normalization; with num_styles > 1 conditional (Dumoulin et al.):
    gamma and beta are style_weights @ per-style tables, so any blend of styles works."""

    def __init__(self, num_styles=1, epsilon=EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.num_styles = num_styles
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = (input_shape[0] if self.num_styles > 1 else input_shape)[-1]
        self.gamma = self.add_weight(name='gamma', shape=(self.num_styles, channels),
                                     initializer='ones')
        self.beta = self.add_weight(name='beta', shape=(self.num_styles, channels),
                                    initializer='zeros')

    def call(self, inputs):
        if self.num_styles > 1:
            x, style_weights = inputs
            gamma = tf.matmul(style_weights, self.gamma)[:, None, None, :]
            beta = tf.matmul(style_weights, self.beta)[:, None, None, :]
        else:
            x, gamma, beta = inputs, self.gamma[0], self.beta[0]
        mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        # The tiny constant keeps the gradient of sqrt finite on constant feature maps.
        scale = gamma / (tf.sqrt(variance + 1e-12) + self.epsilon)
        return x * scale + (beta - mean * scale)

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.num_styles > 1 else input_shape

    def get_config(self):
        return {**super().get_config(), 'num_styles': self.num_styles, 'epsilon': self.epsilon}


@keras.saving.register_keras_serializable(package='style_training')
class ReflectPadToMultiple(layers.Layer):
    """Reflect-pads bottom/right so strided convolutions and upsampling give back the input size."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, x):
        shape = tf.shape(x)
        pad_height = -shape[1] % self.multiple
        pad_width = -shape[2] % self.multiple
        padded = tf.pad(x, [[0, 0], [0, pad_height], [0, pad_width], [0, 0]], mode='REFLECT')
        # Dynamic paddings hide the channel count, which the TFLite converter needs for the
        # next conv; a reshape states it (tf.ensure_shape has no TFLite op).
        return tf.reshape(padded, [shape[0], shape[1] + pad_height, shape[2] + pad_width,
                                   x.shape[-1]])

    def get_config(self):
        return {**super().get_config(), 'multiple': self.multiple}


@keras.saving.register_keras_serializable(package='style_training')
class CropToMatch(layers.Layer):
    """Crops [x, reference] to the reference's height and width (undoes ReflectPadToMultiple)."""

    def call(self, inputs):
        x, reference = inputs
        shape = tf.shape(reference)
        return x[:, :shape[1], :shape[2], :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:3]) + tuple(input_shape[0][3:])


@keras.saving.register_keras_serializable(package='style_training')
class Upsample2x(layers.Layer):
    """2x resize; becomes one TFLite RESIZE_NEAREST_NEIGHBOR/RESIZE_BILINEAR op (Keras'
    UpSampling2D becomes TILE + RESHAPE)."""

    def __init__(self, method='nearest', **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def call(self, x):
        return tf.image.resize(x, tf.shape(x)[1:3] * 2, method=self.method)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:1]) + tuple(None if size is None else size * 2
                                               for size in input_shape[1:3]) + (input_shape[3],)

    def get_config(self):
        return {**super().get_config(), 'method': self.method}


@keras.saving.register_keras_serializable(package='style_training')
class ResizeLike(layers.Layer):
    """Bilinear resize of [x, reference] to the reference's height and width: one TFLite
    RESIZE_BILINEAR, exact for any input size, so the efficient network needs no padding."""

    def call(self, inputs):
        x, reference = inputs
        return tf.image.resize(x, tf.shape(reference)[1:3], method='bilinear')

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:3]) + tuple(input_shape[0][3:])


def build_transformer(architecture='efficient', alpha=0.25, num_styles=1, name=None):
    """Keras model: `image` [B, H, W, 3] RGB 0..255 (plus `style_weights` [B, num_styles] when
    num_styles > 1) -> stylized RGB 0..255 of the same H and W."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f'architecture must be one of {ARCHITECTURES}, not {architecture!r}')
    image = keras.Input((None, None, 3), name='image')
    inputs = [image]
    if num_styles > 1:
        style_weights = keras.Input((num_styles,), name='style_weights')
        inputs.append(style_weights)

    def norm(x):
        if num_styles > 1:
            return InstanceNorm(num_styles)([x, style_weights])
        return InstanceNorm()(x)

    if architecture == 'efficient':
        x = _efficient_body(image, alpha, norm)
    else:
        x = ReflectPadToMultiple(TOTAL_STRIDE)(image)
        x = _fritz_body(x, alpha, norm, small=architecture == 'fritz_small')
        x = CropToMatch()([norm(x), image])
    x = layers.Activation('tanh')(x)
    output = layers.Rescaling(127.5, offset=127.5, name='stylized')(x)
    return keras.Model(inputs if num_styles > 1 else image, output,
                       name=name or f'{architecture}_a{alpha:g}')


def _widths(alpha):
    return int(alpha * 32), int(alpha * 64), int(alpha * 128)


def _conv(filters, kernel, strides=1):
    return layers.Conv2D(filters, kernel, strides=strides, padding='same', use_bias=False)


def _fritz_body(x, alpha, norm, small):
    """9x9 conv, two stride-2 3x3 convs, residual blocks, two upsample + 3x3 conv, 9x9 conv to RGB.
    The small variant uses one width everywhere and three residual blocks instead of five."""
    narrow, middle, wide = (_widths(alpha)[0],) * 3 if small else _widths(alpha)

    def conv_norm_relu(x, filters, kernel, strides=1):
        return layers.ReLU()(norm(_conv(filters, kernel, strides)(x)))

    x = conv_norm_relu(x, narrow, 9)
    x = conv_norm_relu(x, middle, 3, 2)
    x = conv_norm_relu(x, wide, 3, 2)
    for _ in range(3 if small else 5):
        y = conv_norm_relu(x, wide, 3)
        x = layers.Add()([norm(_conv(wide, 3)(y)), x])
    x = conv_norm_relu(Upsample2x()(x), middle, 3)
    x = conv_norm_relu(Upsample2x()(x), narrow, 3)
    return _conv(3, 9)(x)


def _efficient_body(image, alpha, norm, residual_blocks=3):
    """Spends its work at 1/2 and 1/4 resolution; full resolution sees only the output convs.

    A stride-2 3x3 conv reads the image directly (no full-resolution stem or padding), a second
    one reaches 1/4 resolution, where depthwise-separable residual blocks do most of the work.
    The decoder reduces channels with 1x1 convs before each bilinear resize (no depth-to-space,
    whose block grid shows and flickers) and adds the 1/2-resolution features back. The output
    mixes, per pixel (1x1 convs: a 3x3 here cost a quarter of the run time), the upsampled
    features with the image's own colours, which keeps edges where they are: content detail
    stays crisp and stable under small camera motion.
    Resizes go to the exact size of the matching tensor, so any height and width works.
    """
    narrow, middle, wide = _widths(alpha)

    def relu_norm(x):
        return layers.ReLU()(norm(x))

    def separable(x, filters, kernel):
        x = layers.DepthwiseConv2D(kernel, padding='same', use_bias=False)(x)
        return _conv(filters, 1)(x)

    image = layers.Rescaling(1 / 127.5, offset=-1.0)(image)  # keeps the image conv from saturating
    half = relu_norm(_conv(middle, 3, 2)(image))
    x = relu_norm(_conv(wide, 3, 2)(half))
    for _ in range(residual_blocks):
        y = relu_norm(separable(x, wide, 3))
        x = layers.Add()([norm(separable(y, wide, 3)), x])
    x = ResizeLike()([_conv(middle, 1)(x), half])
    x = layers.Add()([relu_norm(separable(x, middle, 3)), half])
    x = ResizeLike()([_conv(narrow, 1)(x), image])
    return layers.Add()([_conv(3, 1)(x), layers.Conv2D(3, 1)(image)])


def multiply_adds_per_megapixel(model, size=256):
    """Convolution multiply-adds per megapixel of input, measured by running the model on a
    size x size image (a multiple of the total stride, so no padding is counted)."""
    convs = [layer for layer in model.layers
             if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D))]
    probe = keras.Model(model.input, [layer.output for layer in convs])
    inputs = np.zeros((1, size, size, 3), np.float32)
    if len(model.inputs) > 1:
        inputs = [inputs, np.ones((1, model.inputs[1].shape[-1]), np.float32)]
    outputs = probe(inputs)
    macs = sum(int(np.prod(out.shape[1:3])) * int(np.prod(layer.kernel.shape))
               for layer, out in zip(convs, outputs))
    return macs * 1e6 / (size * size)


def describe_architectures(alphas=(0.25,)):
    """Markdown table of multiply-adds per megapixel and parameters of each architecture."""
    rows = ['| architecture | alpha | MAC per megapixel | parameters |', '|---|---|---|---|']
    for architecture in ARCHITECTURES:
        for alpha in (0.3,) if architecture == 'fritz_small' else alphas:
            model = build_transformer(architecture, alpha)
            rows.append(f'| {architecture} | {alpha:g} | '
                        f'{multiply_adds_per_megapixel(model) / 1e9:.2f} G | '
                        f'{model.count_params():,} |')
    table = '\n'.join(rows)
    print(table)
    return table


def fritz_h5_architecture(path):
    """(architecture, alpha) of a Fritz Keras 2 .h5: the small variant has 12 convolutions, the
    full one 16; alpha is the smallest multiple of 0.05 giving the first conv's width."""
    with h5py.File(path, 'r') as f:
        config = json.loads(f.attrs['model_config'])
    convs = [layer['config'] for layer in config['config']['layers']
             if layer['class_name'] == 'Conv2D']
    architecture = {16: 'fritz', 12: 'fritz_small'}.get(len(convs))
    if architecture is None:
        raise ValueError(f'{path}: {len(convs)} convolutions, not a Fritz style transfer model')
    filters = convs[0]['filters']
    alpha = next((step / 20 for step in range(1, 81) if int(step / 20 * 32) == filters),
                 filters / 32)
    return architecture, alpha


def load_fritz_h5(path):
    """Our network with the weights of a Fritz style transfer .h5 (read with h5py: Keras 3
    cannot deserialize its custom layers). Layers are matched by order of creation."""
    architecture, alpha = fritz_h5_architecture(path)
    model = build_transformer(architecture, alpha)
    with h5py.File(path, 'r') as f:
        group = f['model_weights'] if 'model_weights' in f else f
        names = [name.decode() if isinstance(name, bytes) else name
                 for name in group.attrs['layer_names']]

        def weights_of(prefix):
            found = []
            for name in names:
                if name.startswith(prefix):
                    layer = group[name]
                    found.append({weight.decode().split('/')[-1].split(':')[0]:
                                  np.array(layer[weight]) for weight in layer.attrs['weight_names']})
            return found

        convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
        norms = [layer for layer in model.layers if isinstance(layer, InstanceNorm)]
        fritz_convs, fritz_norms = weights_of('conv2d_'), weights_of('instance_normalization_')
        if (len(convs), len(norms)) != (len(fritz_convs), len(fritz_norms)):
            raise ValueError(f'{path}: layer counts do not match {architecture}')
        for layer, weights in zip(convs, fritz_convs):
            layer.kernel.assign(weights['kernel'])
        for layer, weights in zip(norms, fritz_norms):
            layer.gamma.assign(weights['gamma'][None])
            layer.beta.assign(weights['beta'][None])
    return model
