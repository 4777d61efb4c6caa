"""Image transformation networks (raw RGB 0..255 in and out); checkpoints.py loads them.

'fritz' and 'fritz_small' follow Johnson et al. as laid out by fritzlabs/fritz-models, so their
.h5 checkpoints load. 'efficient' keeps that encoder/decoder shape but spends its multiply-adds at
1/4 resolution in depthwise-separable blocks and upsamples by resize + convolution (no
depth-to-space, whose block grid shows and flickers). Its options (EFFICIENT_OPTIONS: padding,
full-resolution head, capacity at 1/4 resolution) are recorded in training.json; the defaults
are the shipped network. docs/network_candidates.md has their timings.
"""
import collections

import keras
import numpy as np
from keras import layers, ops
from style_transfer_ros.model_contract import ARCHITECTURES

TOTAL_STRIDE = 4  # two stride-2 convolutions
# The efficient network's convs that read the raw 0..255 image compute in float32 under mixed
# precision too: their kernel gradients sum pixel values over the image and overflow float16.
RAW_PIXELS = {'dtype': 'float32'}
PIXELS_IN = 1 / 127.5  # convs that read raw pixels learn on -1..1
EPSILON = 1e-3  # as the Fritz InstanceNormalization: (x - mean) / (std + epsilon)


@keras.saving.register_keras_serializable(package='style_training')
class InstanceNorm(layers.Layer):
    """Instance normalization; with num_styles > 1 conditional (Dumoulin et al.):
    gamma and beta are style_weights @ per-style tables, so any blend of styles works."""

    def __init__(self, num_styles=1, epsilon=EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.num_styles = num_styles
        self.epsilon = epsilon
        # Under mixed precision the statistics stay float32, like Keras' own normalization
        # layers: E[x^2] - E[x]^2 cancels badly in float16 and 1e-12 underflows to 0.
        self.autocast = False

    def build(self, input_shape):
        channels = (input_shape[0] if self.num_styles > 1 else input_shape)[-1]
        self.gamma = self.add_weight(name='gamma', shape=(self.num_styles, channels),
                                     initializer='ones')
        self.beta = self.add_weight(name='beta', shape=(self.num_styles, channels),
                                    initializer='zeros')

    def call(self, inputs):
        if self.num_styles > 1:
            x, style_weights = inputs
            style_weights = ops.cast(style_weights, 'float32')
            gamma = ops.matmul(style_weights, self.gamma)[:, None, None, :]
            beta = ops.matmul(style_weights, self.beta)[:, None, None, :]
        else:
            x, gamma, beta = inputs, self.gamma[0], self.beta[0]
        dtype, x = x.dtype, ops.cast(x, 'float32')  # casts are no-ops in a float32 network
        # Variance as E[x^2] - E[x]^2: two reductions of x, no full-size (x - mean)^2 tensor;
        # TFLite runs this about 25 % faster than tf.nn.moments' graph.
        mean = ops.mean(x, axis=[1, 2], keepdims=True)
        variance = ops.maximum(
            ops.mean(ops.square(x), axis=[1, 2], keepdims=True) - ops.square(mean), 0.0)
        # The tiny constant keeps the gradient of sqrt finite on constant feature maps.
        scale = gamma / (ops.sqrt(variance + 1e-12) + self.epsilon)
        return ops.cast(x * scale + (beta - mean * scale), dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.num_styles > 1 else input_shape

    def get_config(self):
        return {**super().get_config(), 'num_styles': self.num_styles, 'epsilon': self.epsilon}


@keras.saving.register_keras_serializable(package='style_training')
class ReflectPadToMultiple(layers.Layer):
    """Reflect-pads bottom/right so strided convolutions and upsampling give back the input
    size."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, x):
        shape = ops.shape(x)
        pad_height = -shape[1] % self.multiple
        pad_width = -shape[2] % self.multiple
        padded = ops.pad(x, [[0, 0], [0, pad_height], [0, pad_width], [0, 0]], mode='reflect')
        # Dynamic paddings hide the channel count, which the TFLite converter needs for the
        # next conv; a reshape states it (tf.ensure_shape has no TFLite op).
        return ops.reshape(padded, [shape[0], shape[1] + pad_height, shape[2] + pad_width,
                                    x.shape[-1]])

    def compute_output_shape(self, input_shape):
        sizes = tuple(None if size is None else size + -size % self.multiple
                      for size in input_shape[1:3])
        return tuple(input_shape[:1]) + sizes + (input_shape[3],)

    def get_config(self):
        return {**super().get_config(), 'multiple': self.multiple}


@keras.saving.register_keras_serializable(package='style_training')
class EdgePad(layers.Layer):
    """Repeats the border rows and columns: `before` times above and left, `after` times below
    and right. Zero padding in front of a 3x3 conv makes every border pixel of a
    low-resolution map differ from its neighbours, and the upsampling spreads that into a
    2-4 px frame line; repeated edges have no such step. Built from slices and concatenations,
    which XNNPACK runs: a MIRROR_PAD op is not delegated, splits the graph, and cost the
    shipped network (one pad, on the image) about a quarter of its time at 640x480."""

    def __init__(self, before=1, after=1, **kwargs):
        super().__init__(**kwargs)
        self.before, self.after = before, after

    def call(self, x):
        for axis in (1, 2):
            first = x[:, :1] if axis == 1 else x[:, :, :1]
            last = x[:, -1:] if axis == 1 else x[:, :, -1:]
            x = ops.concatenate([first] * self.before + [x] + [last] * self.after, axis=axis)
        return x

    def compute_output_shape(self, input_shape):
        grow = self.before + self.after
        sizes = tuple(None if size is None else size + grow for size in input_shape[1:3])
        return tuple(input_shape[:1]) + sizes + (input_shape[3],)

    def get_config(self):
        return {**super().get_config(), 'before': self.before, 'after': self.after}


@keras.saving.register_keras_serializable(package='style_training')
class EdgePadTopLeft(EdgePad):
    """Repeats the top row and left column once. A 'valid' stride-2 3x3 conv after it
    centres output pixel j on input pixel 2j ('same' padding centres it on 2j + 1), which is
    where a TF1-style 2x bilinear resize puts it back: nothing is shifted."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, 'before': 1, 'after': 0})


@keras.saving.register_keras_serializable(package='style_training')
class CropToMatch(layers.Layer):
    """Crops [x, reference] to the reference's height and width (undoes ReflectPadToMultiple)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, :shape[1], :shape[2], :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:3]) + tuple(input_shape[0][3:])


@keras.saving.register_keras_serializable(package='style_training')
class Upsample2x(layers.Layer):
    """Nearest-neighbour 2x resize; becomes one TFLite RESIZE_NEAREST_NEIGHBOR op (Keras'
    UpSampling2D becomes TILE + RESHAPE)."""

    def call(self, x):
        return resize_like(x, x, 'nearest', scale=2)

    def compute_output_shape(self, input_shape):
        sizes = tuple(None if size is None else size * 2 for size in input_shape[1:3])
        return tuple(input_shape[:1]) + sizes + (input_shape[3],)


@keras.saving.register_keras_serializable(package='style_training')
class ResizeLike(layers.Layer):
    """Bilinear resize of [x, reference] to the reference's height and width: one TFLite
    RESIZE_BILINEAR, exact for any input size, so the efficient network needs no padding.

    half_pixel_centers=False (TF1 sampling) makes an exact 2x resize take TFLite's 2x2 fast
    path, about 3x faster than the half-pixel one; the network learns the fixed offset. True
    is what first-version checkpoints were trained with (their config lacks the key); the
    shipped models' training stages still load them (see checkpoints.upgrade_efficient_v1).
    """

    def __init__(self, half_pixel_centers=True, **kwargs):
        super().__init__(**kwargs)
        self.half_pixel_centers = half_pixel_centers

    def call(self, inputs):
        x, reference = inputs
        return resize_like(x, reference, 'bilinear', self.half_pixel_centers)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:3]) + tuple(input_shape[0][3:])

    def get_config(self):
        return {**super().get_config(), 'half_pixel_centers': self.half_pixel_centers}


def resize_like(x, reference, interpolation, half_pixel_centers=True, scale=1):
    """x resized to scale times the reference's height and width. On TensorFlow the ops the
    converter turns into one TFLite resize (the size as one SLICE of the shape; TF1 bilinear
    sampling as ResizeBilinear); elsewhere keras.ops, which compute the same values."""
    if keras.backend.backend() == 'tensorflow':
        import tensorflow as tf
        size = tf.shape(reference)[1:3]
        size = size * scale if scale != 1 else size
        if half_pixel_centers:
            return tf.image.resize(x, size, method=interpolation)
        return tf.raw_ops.ResizeBilinear(images=x, size=size, half_pixel_centers=False)
    shape = ops.shape(reference)
    size = (shape[1] * scale, shape[2] * scale)
    if half_pixel_centers:
        return ops.image.resize(x, size, interpolation=interpolation)
    return resize_bilinear_corners(x, size)


def resize_bilinear_corners(x, size):
    """TF1's bilinear resize (half_pixel_centers=False: output pixel i samples input pixel
    i * in / out) in keras.ops, for the backends that have no such op; the same values as
    TensorFlow's ResizeBilinear, which the tensorflow backend uses."""
    for axis, out in zip((1, 2), size):
        length = ops.shape(x)[axis]
        position = ops.arange(out, dtype='float32') * (length / out)
        low = ops.cast(ops.floor(position), 'int32')
        high = ops.minimum(low + 1, length - 1)
        shape = [1, 1, 1, 1]
        shape[axis] = out
        fraction = ops.cast(ops.reshape(position - ops.floor(position), shape), x.dtype)
        low_values, high_values = ops.take(x, low, axis=axis), ops.take(x, high, axis=axis)
        x = low_values + (high_values - low_values) * fraction
    return x


@keras.saving.register_keras_serializable(package='style_training')
class ScaledConv2D(layers.Conv2D):
    """Conv2D computing output_scale * (conv(input_scale * x, kernel) + bias) + output_offset.

    The weights are learned at the scale of a plain network (inputs -1..1, outputs in tanh
    units), where Adam's step sizes suit them, while the network reads and writes raw 0..255
    pixels: frozen for TFLite, the scales fold into the kernel and bias, so no full-resolution
    rescaling op remains.
    """

    def __init__(self, *args, input_scale=1.0, output_scale=1.0, output_offset=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_scale, self.output_scale, self.output_offset = (
            input_scale, output_scale, output_offset)

    def call(self, inputs):
        outputs = self.convolution_op(inputs,
                                      self.kernel * (self.input_scale * self.output_scale))
        if self.use_bias:
            outputs = outputs + self.bias * self.output_scale
        return outputs + self.output_offset if self.output_offset else outputs

    def get_config(self):
        return {**super().get_config(), 'input_scale': self.input_scale,
                'output_scale': self.output_scale, 'output_offset': self.output_offset}


def style_count(model):
    """N of a conditional network's style_weights input [B, N]; 1 for a single-style one."""
    if len(model.inputs) == 1:
        return 1
    ranks = [len(t.shape) for t in model.inputs]
    if ranks != [4, 2]:
        raise ValueError(f'expected inputs (image [B,H,W,3], style_weights [B,N]), got '
                         f'{[tuple(t.shape) for t in model.inputs]}')
    return int(model.inputs[1].shape[1])


# Options of the efficient network (network_options in training.json); these defaults are
# the network the shipped models use.
EFFICIENT_OPTIONS = {'head': 'colour', 'padding': 'zero', 'blocks': 3, 'quarter_channels': None}
PADDINGS = ('zero', 'edge')


def head_of(model):
    """The head of a built efficient network, told by its named layers ('colour' for the
    heads without any, and for the Fritz networks)."""
    names = {layer.name for layer in model.layers}
    named = [name for name, head in HEADS.items() if head.layers and names >= set(head.layers)]
    return max(named, key=lambda name: len(HEADS[name].layers), default='colour')


def colour_mix(model):
    """The layer of the full-resolution 1x1 colour mix of the photo (every head but the paint
    heads): the one weighted layer outside HEAD_LAYERS that reads the image input directly."""
    image = model.inputs[0]
    found = [layer for layer in model.layers if layer.weights
             and layer.name not in HEAD_LAYERS and layer.input is image]
    if len(found) != 1:
        raise ValueError(f'{model.name} has {len(found)} colour mix layers, not one')
    return found[0]


def network_options(architecture='efficient', **options):
    """The efficient network's options (None: the default), completed with the defaults;
    ValueError on unknown keys or values (and on any option for the Fritz networks, which
    have none)."""
    known = EFFICIENT_OPTIONS if architecture == 'efficient' else {}
    options = {key: value for key, value in options.items() if value is not None}
    unknown = set(options) - set(known)
    if unknown:
        raise ValueError(f'{architecture} has no option(s) {sorted(unknown)}')
    options = {**known, **options}
    if options and (options['head'] not in HEADS or options['padding'] not in PADDINGS):
        raise ValueError(f'head must be one of {tuple(HEADS)} and padding one of {PADDINGS}, got '
                         f'{options["head"]!r}, {options["padding"]!r}')
    return options


def build_transformer(architecture='efficient', alpha=0.25, num_styles=1, name=None,
                      **options):
    """Keras model: `image` [B, H, W, 3] RGB 0..255 (plus `style_weights` [B, num_styles] when
    num_styles > 1) -> stylized RGB 0..255 of the same H and W. options: see
    EFFICIENT_OPTIONS and _efficient_body."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f'architecture must be one of {ARCHITECTURES}, not {architecture!r}')
    options = network_options(architecture, **options)
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
        body = _efficient_body(image, alpha, norm, **options)
        output = layers.ReLU(max_value=255.0, name='stylized')(body)
    else:
        x = ReflectPadToMultiple(TOTAL_STRIDE)(image)
        x = _fritz_body(x, alpha, norm, small=architecture == 'fritz_small')
        x = layers.Activation('tanh')(CropToMatch()([norm(x), image]))
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


def _efficient_body(image, alpha, norm, head='colour', padding='zero', blocks=3,
                    quarter_channels=None):
    """Spends its work at 1/2 and 1/4 resolution; full resolution sees only the head.

    A stride-2 3x3 conv reads the raw image directly (no full-resolution stem or rescaling;
    a one-pixel pad centres it on the pixels the final upsampling returns to), a second one
    reaches 1/4 resolution, where `blocks` depthwise-separable residual blocks of
    `quarter_channels` (default alpha * 128) do most of the work. The decoder reduces
    channels with 1x1 convs before each bilinear 2x resize (no depth-to-space, whose block
    grid shows and flickers) and adds the 1/2-resolution features back. Clipping to 0..255
    replaces tanh (no full-resolution transcendental). Resizes go to the exact size of the
    matching tensor, so any height and width works; multiples of 4 take the fast path.

    padding 'zero': the 3x3 convs after the first pad with zeros ('same'), as the shipped
    models do: a frame line at the borders, and the second stride-2 conv is centred half a
    pixel off the resize that undoes it. 'edge': they repeat the border pixels instead, and
    the second stride-2 conv is centred like the first.
    head: how full resolution is made, see _efficient_head.
    """
    middle, wide = _widths(alpha)[1:]
    wide = quarter_channels or wide
    edge = padding == 'edge'

    def relu_norm(x):
        return layers.ReLU()(norm(x))

    def conv3x3(layer, x):
        """A 3x3 conv (built without padding='same' when edge) on x, padded as chosen. With
        stride 2, one repeated row and column on each side centre output pixel j on input
        pixel 2j, like the first conv, and keep ceil(n / 2) pixels of n, like 'same'."""
        return layer(EdgePad()(x)) if edge else layer(x)

    def separable(x, filters):
        depthwise = layers.DepthwiseConv2D(3, padding='valid' if edge else 'same',
                                           use_bias=False)
        return _conv(filters, 1)(conv3x3(depthwise, x))

    def upsample_like(x, reference):
        return ResizeLike(half_pixel_centers=False)([x, reference])

    half = relu_norm(ScaledConv2D(middle, 3, strides=2, use_bias=False,
                                  input_scale=PIXELS_IN, **RAW_PIXELS)(EdgePadTopLeft()(image)))
    down = layers.Conv2D(wide, 3, strides=2, padding='valid' if edge else 'same', use_bias=False)
    x = relu_norm(conv3x3(down, half))
    for _ in range(blocks):
        y = relu_norm(separable(x, wide))
        x = layers.Add()([norm(separable(y, wide)), x])
    x = upsample_like(_conv(middle, 1)(x), half)
    x = layers.Add()([relu_norm(separable(x, middle)), half])
    return _efficient_head(head, x, image, upsample_like)


def _efficient_head(head, x, image, upsample_like):
    """Full resolution from the 1/2-resolution features x and the image itself: HEADS[head]."""
    return HEADS[head].build(x, image, upsample_like)


ZERO_START = {'kernel_initializer': 'zeros', 'use_bias': False}


def _tint_terms(x, image, upsample_like):
    """The shipped head's terms: per pixel the upsampled 3-channel style term plus a 1x1
    colour mix of the image (1x1 conv and bilinear resize commute, so the style goes up with
    3 channels only). That alone can only add blurred texture: to paint over a photo edge it
    must cancel the sharp edge with a blurred one, which leaves halos and a relief. The other
    tint heads add a term whose new conv starts at zero (so they start as the shipped network)
    and which can keep, scale or remove the photo's own edges where it is."""
    style = upsample_like(ScaledConv2D(3, 1, use_bias=False, output_scale=127.5)(x), image)
    colours = ScaledConv2D(3, 1, input_scale=PIXELS_IN, output_scale=127.5, **RAW_PIXELS,
                           output_offset=127.5)(image)
    return style, colours


def _colour_head(x, image, upsample_like):
    """The shipped head: style term + colour mix."""
    return layers.Add()(list(_tint_terms(x, image, upsample_like)))


def _gain_head(x, image, upsample_like):
    """(1 + g) * colours: a smooth per-pixel, per-channel gain g (3 channels upsampled)."""
    style, colours = _tint_terms(x, image, upsample_like)
    gain = upsample_like(layers.Conv2D(3, 1, name='local_gain', **ZERO_START)(x), image)
    return layers.Add()([style, colours, layers.Multiply()([gain, colours])])


def _affine_head(x, image, upsample_like):
    """A local affine colour transform (a bilateral-grid / guided-filter upsampler in the
    spirit of HDRNet and Wu et al. 2018): 9 smooth coefficient maps A, upsampled, multiply 9
    learned projections of the image and a 1x1 conv sums them to RGB."""
    style, colours = _tint_terms(x, image, upsample_like)
    coefficients = layers.Conv2D(9, 1, name='local_affine', **ZERO_START)(x)
    projections = ScaledConv2D(9, 1, use_bias=False, input_scale=PIXELS_IN, **RAW_PIXELS,
                               name='affine_projections')(image)
    product = layers.Multiply()([upsample_like(coefficients, image), projections])
    return layers.Add()([style, colours, ScaledConv2D(3, 1, use_bias=False, output_scale=127.5,
                                                      name='affine_sum')(product)])


def _refine_head(x, image, upsample_like):
    """A 3x3 conv (6 -> 3) on [upsampled style, image] adds full-resolution texture
    (zero-padded: a 1-px border effect; an edge pad of 6 full-resolution channels cost more
    than the whole head)."""
    style, colours = _tint_terms(x, image, upsample_like)
    both = layers.Concatenate()([style, image])
    return layers.Add()([style, colours, ScaledConv2D(
        3, 3, padding='same', input_scale=PIXELS_IN, name='refine', **ZERO_START,
        **RAW_PIXELS)(both)])


def _paint_terms(x, image, upsample_like):
    """Heads that paint instead of tint: every colour comes from the network, the photo gives
    structure only (the tint heads' colour mix lets its palette, edges and local contrast
    pass straight through, so the style can only ride on them). The upsampled 3-channel
    style term around mid-grey (texture and palette made at 1/2 resolution), plus an edge
    guide: 3 learned 1x1 projections of the photo minus their 3x3 mean at 1/2 resolution,
    upsampled (the photo's detail above 1/2 resolution, with no flat tone or colour), times a
    smooth 3-channel gain from x that starts at zero (no photo edge shows until training asks
    for it, and in the colour it chooses). The 3x3 mean is edge-padded and centred on pixel
    2j, where the TF1-style resize puts it back."""
    style = upsample_like(ScaledConv2D(3, 1, use_bias=False, output_scale=127.5,
                                       output_offset=127.5)(x), image)
    guide = ScaledConv2D(3, 1, use_bias=False, input_scale=PIXELS_IN, name='paint_guide',
                         **RAW_PIXELS)(image)
    coarse = layers.AveragePooling2D(3, strides=2)(EdgePad()(guide))
    detail = layers.Subtract()([guide, upsample_like(coarse, image)])
    gain = upsample_like(ScaledConv2D(3, 1, output_scale=127.5, name='paint_gain',
                                      **ZERO_START)(x), image)
    return [style, layers.Multiply()([gain, detail])]


def _paint_head(x, image, upsample_like):
    """Paint terms only."""
    return layers.Add()(_paint_terms(x, image, upsample_like))


def _paint_decoder_head(x, image, upsample_like):
    """The paint terms plus 8 channels of x upsampled to full resolution, a 3x3 depthwise conv
    (zero-padded, as the refine head) and a 1x1 conv to RGB starting at zero: strokes finer
    than 1/2 resolution."""
    terms = _paint_terms(x, image, upsample_like)
    features = upsample_like(layers.Conv2D(8, 1, use_bias=False, name='paint_features')(x),
                             image)
    strokes = layers.DepthwiseConv2D(3, padding='same', use_bias=False,
                                     name='paint_strokes')(features)
    terms.append(ScaledConv2D(3, 1, output_scale=127.5, name='paint_decoder',
                              **ZERO_START)(strokes))
    return layers.Add()(terms)


class Head(collections.namedtuple('Head', 'build layers paints')):
    """A head of the efficient network: build(x, image, upsample_like) -> full resolution;
    layers: the names of the layers it adds to the shipped head (checkpoints.copy_weights
    leaves them at their start when the source network has none); paints: no colour mix of
    the photo (copy_weights leaves a source's mix out)."""


HEADS = {
    'colour': Head(_colour_head, (), False),
    'gain': Head(_gain_head, ('local_gain',), False),
    'affine': Head(_affine_head, ('local_affine', 'affine_projections', 'affine_sum'), False),
    'refine': Head(_refine_head, ('refine',), False),
    'paint': Head(_paint_head, ('paint_guide', 'paint_gain'), True),
    'paint_decoder': Head(_paint_decoder_head, (
        'paint_guide', 'paint_gain', 'paint_features', 'paint_strokes', 'paint_decoder'), True),
}
HEAD_LAYERS = frozenset(name for head in HEADS.values() for name in head.layers)


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
