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
    from style_training.tflite_runner import Interpreter, operator_versions
    path = tmp_path / 'efficient.tflite'
    convert_model(network.build_transformer('efficient', 0.25), path)
    assert 'TANH' not in operator_versions(path)
    interpreter = Interpreter(str(path))
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
