import numpy as np
import pytest

from style_training import network


def _random_image(height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype(np.float32)


@pytest.mark.parametrize('architecture', network.ARCHITECTURES)
@pytest.mark.parametrize('alpha', [0.25, 0.5])
def test_output_has_input_size_and_pixel_range(architecture, alpha):
    model = network.build_transformer(architecture, alpha)
    tiny = ((2, 3),) if architecture == 'efficient' else ()  # Fritz's reflect pad needs 4+ px
    for height, width in ((37, 53), (64, 64)) + tiny:
        output = model(_random_image(height, width)).numpy()
        assert output.shape == (1, height, width, 3)
        assert output.min() >= 0 and output.max() <= 255
        assert output.std() > 1  # not a constant image


def test_efficient_needs_a_quarter_of_fritz_multiply_adds():
    fritz = network.multiply_adds_per_megapixel(network.build_transformer('fritz', 0.25))
    efficient = network.multiply_adds_per_megapixel(network.build_transformer('efficient', 0.25))
    # Fritz alpha 0.25 per pixel: 9x9x3x8 + 9x9x8x3 at full resolution, 8 -> 16 up-conv 3x3 at
    # full, ... = 12528 multiply-adds.
    assert fritz == pytest.approx(12528e6)
    assert efficient <= fritz / 4


def _randomize_norms(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, network.InstanceNorm):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.uniform(-0.5, 0.5, layer.beta.shape))


def test_conditional_one_hot_equals_single_style_network():
    conditional = network.build_transformer('efficient', 0.25, num_styles=3)
    _randomize_norms(conditional, seed=1)
    single = network.build_transformer('efficient', 0.25)
    image = _random_image(32, 40)
    outputs = []
    for style in range(3):
        single.set_weights([w[style:style + 1] if w.ndim == 2 and w.shape[0] == 3 else w
                            for w in conditional.get_weights()])
        one_hot = np.eye(3, dtype=np.float32)[style:style + 1]
        output = conditional([image, one_hot]).numpy()
        np.testing.assert_allclose(output, single(image).numpy(), atol=1e-3)
        outputs.append(output)
    assert np.abs(outputs[0] - outputs[1]).mean() > 1
    blend = conditional([image, np.array([[0.5, 0.5, 0]], np.float32)]).numpy()
    assert np.abs(blend - outputs[0]).mean() > 0.1 and np.abs(blend - outputs[1]).mean() > 0.1


def test_efficient_network_leaves_full_resolution_to_the_output_sum(tmp_path):
    """Speed by construction: at full resolution the TFLite graph holds only the input, the
    upsampled 3-channel style term, the colour mix, their sum and the clip (no rescaling, no
    tanh, no wide feature maps)."""
    from style_training.convert import convert_model
    from style_training.convert import operator_versions
    from style_transfer_ros.model_runtime import find_runtime
    path = tmp_path / 'efficient.tflite'
    convert_model(network.build_transformer('efficient', 0.25), path)
    assert 'TANH' not in operator_versions(path)
    interpreter = find_runtime()[2](str(path))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]['index'], [1, 64, 96, 3])
    interpreter.allocate_tensors()
    full = [d['shape'] for d in interpreter.get_tensor_details()
            if tuple(d['shape'][1:3]) == (64, 96)]
    assert all(shape[3] == 3 for shape in full) and len(full) <= 6, full


def test_efficient_half_resolution_pixel_j_is_centred_on_image_pixel_2j():
    """Where the TF1-style 2x upsampling puts it back, so the style term is not shifted
    against the image's edges."""
    import keras
    model = network.build_transformer('efficient', 0.25)
    first = next(layer for layer in model.layers if isinstance(layer, network.ScaledConv2D))
    first.kernel.assign(np.ones(first.kernel.shape) * np.array([1, 2, 1])[:, None, None, None])
    image = np.zeros((1, 24, 32, 3), np.float32)
    image[0, 10, 14] = 127.5
    response = keras.Model(model.input, first.output)(image).numpy()[0, ..., 0]
    assert response.shape == (12, 16)
    assert np.argwhere(response > 0).tolist() == [[5, 7]]  # 'same' padding: rows 4 and 5


def test_keras_file_round_trip(tmp_path):
    import keras
    model = network.build_transformer('efficient', 0.25, num_styles=2)
    _randomize_norms(model, seed=2)
    model.save(tmp_path / 'model.keras')
    loaded = keras.saving.load_model(tmp_path / 'model.keras', compile=False)
    inputs = [_random_image(21, 30), np.array([[0.3, 0.7]], np.float32)]
    np.testing.assert_allclose(loaded(inputs).numpy(), model(inputs).numpy(), atol=1e-4)


@pytest.mark.parametrize('size', [(24, 32), (13, 17), (5, 7)])
def test_keras_ops_tf1_bilinear_resize_is_tensorflows(size):
    """The resize the JAX and torch backends use computes what TensorFlow's ResizeBilinear
    (half_pixel_centers=False), the converter's op, does: up, odd and down sizes."""
    import tensorflow as tf
    image = _random_image(12, 16, seed=3)
    expected = tf.raw_ops.ResizeBilinear(images=image, size=size, half_pixel_centers=False)
    np.testing.assert_allclose(np.asarray(network.resize_bilinear_corners(image, size)),
                               expected.numpy(), rtol=1e-5, atol=1e-3)


# Every new option of the efficient network alone, and the combinations the note measures.
OPTION_CASES = [{'padding': 'edge'}, {'head': 'gain'}, {'head': 'affine'}, {'head': 'refine'},
                {'head': 'paint'}, {'head': 'paint_decoder'},
                {'blocks': 4}, {'quarter_channels': 48},
                {'padding': 'edge', 'head': 'affine', 'blocks': 4}]


def _randomize(model, seed, spread=0.3):
    """Every weight random (new heads start at zero, which would hide them)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(1 if w.ndim == 2 else 0, spread, w.shape).astype(np.float32)
                       for w in model.get_weights()])


@pytest.mark.parametrize('options', OPTION_CASES, ids=str)
def test_efficient_options_keep_any_input_size(options):
    model = network.build_transformer('efficient', 0.25, **options)
    _randomize(model, seed=3)
    for height, width in ((250, 333), (37, 53), (2, 3)):
        output = model(_random_image(height, width)).numpy()
        assert output.shape == (1, height, width, 3)
        assert output.min() >= 0 and output.max() <= 255 and output.std() > 1


def test_unknown_network_options_are_refused():
    with pytest.raises(ValueError, match='head must be one of'):
        network.build_transformer('efficient', 0.25, head='bilateral')
    with pytest.raises(ValueError, match='no option'):
        network.build_transformer('fritz', 0.25, padding='edge')
    assert network.network_options('fritz', head=None) == {}


@pytest.mark.parametrize('padding, flat', [('edge', True), ('zero', False)])
def test_edge_padding_gives_a_flat_photo_a_flat_output(padding, flat):
    """No frame line by construction: repeated border pixels make every padded map of a flat
    photo flat, while zero padding steps at the border of each low-resolution map. A flat map's
    deviation is float noise, which epsilon 1e-3 amplifies about 1000-fold in each norm (so the
    result would depend on the CPU's conv kernels): the norms here take epsilon 1."""
    model = network.build_transformer('efficient', 0.25, padding=padding, head='affine')
    _randomize(model, seed=4)
    for layer in model.layers:
        if isinstance(layer, network.InstanceNorm):
            layer.epsilon = 1.0
    output = model(np.full((1, 40, 56, 3), [90, 140, 200], np.float32)).numpy()
    assert 0 < output.mean() < 255
    assert (np.ptp(output, axis=(1, 2)).max() < 0.5) == flat  # half a grey level


def _blank_body(model):
    """Zero the first conv: the body then sees no photo and its features are constant, so
    only the head's own paths from the photo to the output are left."""
    first = next(layer for layer in model.layers if isinstance(layer, network.ScaledConv2D))
    first.kernel.assign(np.zeros(first.kernel.shape))


@pytest.mark.parametrize('head, reach', [('colour', 0), ('gain', 0), ('affine', 0),
                                         ('refine', 1)])
def test_heads_keep_photo_detail_where_it_is(head, reach):
    """Given the coefficients, a head maps each photo pixel to the same output pixel (the
    colour, gain and affine heads) or to its 3x3 neighbourhood (refine): photo edges are not
    moved or spread into halos. The randomized new terms do change the output."""
    model = network.build_transformer('efficient', 0.25, head=head)
    _randomize(model, seed=5, spread=0.05)  # little clipping
    _blank_body(model)
    photo = np.full((1, 24, 32, 3), 100, np.float32)
    bright = photo.copy()
    bright[0, 11, 17] = 200
    changed = np.argwhere(np.abs(model(bright) - model(photo))[0].max(-1) > 1e-3)
    assert changed.min(0).tolist() == [11 - reach, 17 - reach]
    assert changed.max(0).tolist() == [11 + reach, 17 + reach]
    if head != 'colour':
        zero_start = network.build_transformer('efficient', 0.25, head=head)
        zero_start.set_weights([w if layer.name not in network.HEAD_LAYERS else np.zeros_like(w)
                                for layer in model.layers for w in layer.get_weights()])
        assert np.abs(zero_start(bright) - model(bright)).mean() > 0.05


@pytest.mark.parametrize('head', ['paint', 'paint_decoder'])
def test_paint_heads_pass_photo_structure_but_not_its_colours(head):
    """With the body blind to the photo (first conv zero), a paint head's output does not
    depend on a flat photo's colour (the affine head's does: it re-colours the photo), while
    a photo edge still shows, near where it is (the guide's 3x3 mean at 1/2 resolution
    reaches 3 px); at the start (head layers zero) the photo does not show at all."""
    def blind(head):
        model = network.build_transformer('efficient', 0.25, head=head, padding='edge')
        _randomize(model, seed=8, spread=0.05)
        _blank_body(model)
        return model

    red, blue = (np.full((1, 24, 32, 3), colour, np.float32)
                 for colour in ([200, 60, 40], [30, 70, 210]))
    model = blind(head)
    assert np.abs(model(red) - model(blue)).max() < 1e-3
    affine = blind('affine')
    assert np.abs(affine(red) - affine(blue)).max() > 1
    bright = red.copy()
    bright[0, 11, 17] = 255
    changed = np.argwhere(np.abs(model(bright) - model(red))[0].max(-1) > 1e-3)
    assert changed.size and (np.abs(changed - [11, 17]) <= 3).all()
    model.set_weights([w if layer.name not in network.HEAD_LAYERS else np.zeros_like(w)
                       for layer in model.layers for w in layer.get_weights()])
    assert np.abs(model(bright) - model(red)).max() < 1e-3


@pytest.mark.parametrize('options', OPTION_CASES[:6], ids=str)
def test_efficient_options_round_trip_through_keras_files(tmp_path, options):
    import keras
    model = network.build_transformer('efficient', 0.25, num_styles=2, **options)
    _randomize(model, seed=6)
    model.save(tmp_path / 'model.keras')
    loaded = keras.saving.load_model(tmp_path / 'model.keras', compile=False)
    inputs = [_random_image(21, 30), np.array([[0.3, 0.7]], np.float32)]
    np.testing.assert_allclose(loaded(inputs).numpy(), model(inputs).numpy(), atol=1e-3)
    for expected, value in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(expected, value)


@pytest.mark.parametrize('head', ['affine', 'paint_decoder'])
def test_edge_padded_network_converts_and_runs_at_any_size(tmp_path, head):
    """The frozen-function conversion keeps dynamic height and width and the style_weights
    input; the TFLite file matches Keras at odd sizes and loads on the TF 2.5 runtime
    (paint_decoder has every op of the paint heads)."""
    from style_training.convert import convert_model, nano_problems, operator_versions
    from style_transfer_ros.model_runtime import ModelRunner
    model = network.build_transformer('efficient', 0.25, num_styles=2, padding='edge',
                                      head=head)
    _randomize(model, seed=7)
    path = tmp_path / f'edge_{head}.tflite'
    convert_model(model, path, 'float16')
    assert nano_problems(operator_versions(path)) == []
    assert 'MIRROR_PAD' not in operator_versions(path)  # not delegated to XNNPACK: slow
    runner = ModelRunner.from_file(path)
    for height, width in ((250, 333), (48, 64)):
        image = _random_image(height, width, seed=height)
        weights = np.array([0.2, 0.8], np.float32)
        expected = np.clip(model([image, weights[None]]).numpy()[0], 0, 255)
        actual = runner.run(image[0], weights)
        assert actual.shape == (height, width, 3)
        assert np.abs(actual - expected).max() < 2
