"""Stylizer on the tiny fixture models (see make_fixture_models.py)."""
import os

import numpy as np
import pytest

from style_transfer_ros.stylizer import ModelError, Stylizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
FRITZ_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared',
                           'data', 'anchors', 'fritz', 'starry_night_640x480_025.tflite')
MODELS = ('float_dynamic', 'int8', 'fixed_64x48', 'multi_style')


def model_path(name):
    return os.path.join(FIXTURES, name + '.tflite')


def make_frame(height, width, seed=0):
    """Smooth colour gradients plus noise: resizing keeps it recognisable."""
    rows = np.linspace(0, 255, height)[:, None]
    cols = np.linspace(0, 255, width)[None, :]
    noise = np.random.RandomState(seed).uniform(-20, 20, (height, width))
    channels = [rows + 0 * cols, cols + 0 * rows, 255 - (rows + cols) / 2]
    return np.clip(np.stack(channels, axis=2) + noise[..., None], 0, 255).astype(np.uint8)


def mean_difference(a, b):
    return np.abs(a.astype(np.int16) - b).mean()


@pytest.fixture(scope='module')
def loaded():
    return {name: Stylizer(model_path(name)) for name in MODELS}


@pytest.mark.parametrize('name', MODELS)
def test_every_fixture_model_stylizes(loaded, name):
    model = loaded[name]
    frame = make_frame(60, 80)
    weights = [1.0, 0.0, 0.0] if model.num_styles else None
    out = model.stylize(frame, weights)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert mean_difference(out, frame) > 30
    assert model.model_path == model_path(name)
    assert model.backend.split()[0] in ('ai_edge_litert', 'tflite_runtime', 'tensorflow.lite')
    assert model.num_threads == 2


def test_model_properties(loaded):
    assert loaded['float_dynamic'].fixed_size is None
    assert loaded['float_dynamic'].input_dtype == np.float32
    assert loaded['int8'].input_dtype == np.int8
    assert loaded['fixed_64x48'].fixed_size == (48, 64)
    assert loaded['multi_style'].num_styles == 3
    assert loaded['float_dynamic'].num_styles == 0


def test_int8_io_matches_float_model(loaded):
    frame = make_frame(64, 96)
    float_out = loaded['float_dynamic'].stylize(frame)
    int8_out = loaded['int8'].stylize(frame)
    assert np.abs(float_out.astype(np.int16) - int8_out).max() <= 4


def test_fixed_size_model_resizes_in_and_out(loaded):
    model = loaded['fixed_64x48']
    frame = make_frame(120, 200)
    assert model.stylize(frame).shape == (120, 200, 3)
    model.output_size = 'processing'
    model.processing_size = 32  # ignored: a fixed model runs at its own size
    try:
        assert model.stylize(frame).shape == (48, 64, 3)
    finally:
        model.output_size = 'input'
        model.processing_size = 0


def test_dynamic_model_handles_changing_frame_sizes(loaded):
    model = loaded['float_dynamic']
    small, large = make_frame(40, 60), make_frame(96, 128)
    first = model.stylize(small)
    assert model.stylize(large).shape == (96, 128, 3)
    assert np.array_equal(model.stylize(small), first)


def test_processing_size_keeps_aspect_ratio():
    model = Stylizer(model_path('float_dynamic'), processing_size=64, output_size='processing')
    out = model.stylize(make_frame(120, 200))
    assert out.shape == (40, 64, 3)  # 38.4 rounded to a multiple of 4
    assert model.processing_shape(1000, 500) == (64, 32)
    model.output_size = 'input'
    assert model.stylize(make_frame(120, 200)).shape == (120, 200, 3)


def test_processing_size_zero_uses_frame_size_rounded_to_multiple_of_4():
    model = Stylizer(model_path('float_dynamic'), output_size='processing')
    assert model.stylize(make_frame(30, 50)).shape[:2] == model.processing_shape(30, 50)
    assert model.processing_shape(30, 50) in ((32, 48), (28, 52), (32, 52), (28, 48))
    assert model.processing_shape(480, 640) == (480, 640)


def test_upscaling_processing_size():
    model = Stylizer(model_path('float_dynamic'), processing_size=128, output_size='processing')
    assert model.stylize(make_frame(30, 40)).shape == (96, 128, 3)


@pytest.mark.parametrize('value', [-1, 8, 5000, 1.5, True, '256'])
def test_invalid_processing_size_raises(loaded, value):
    with pytest.raises(ValueError, match='processing_size'):
        loaded['float_dynamic'].processing_size = value


def test_invalid_output_size_and_threads_raise(loaded):
    with pytest.raises(ValueError, match='output_size'):
        loaded['float_dynamic'].output_size = 'big'
    with pytest.raises(ValueError, match='num_threads'):
        Stylizer(model_path('float_dynamic'), num_threads=0)


def test_style_weights_change_the_output(loaded):
    model = loaded['multi_style']
    frame = make_frame(48, 64)
    outputs = [model.stylize(frame, w) for w in ([1, 0, 0], [0, 1, 0], [0, 0, 1])]
    assert mean_difference(outputs[0], outputs[1]) > 10
    assert mean_difference(outputs[1], outputs[2]) > 10
    blend = model.stylize(frame, [0.5, 0.5, 0]).astype(np.int16)
    low = np.minimum(outputs[0], outputs[1]) - 1
    high = np.maximum(outputs[0], outputs[1]) + 1
    assert np.all((low <= blend) & (blend <= high))


@pytest.mark.parametrize('weights', [None, [1, 0], [1, 0, 0, 0]])
def test_style_weights_that_do_not_fit_the_model_raise(loaded, weights):
    """The catalog validates and normalizes weights (test_catalog); stylize only refuses a
    vector of the wrong length, a programming error."""
    with pytest.raises(ValueError, match='takes 3 style weights'):
        loaded['multi_style'].stylize(make_frame(16, 16), weights)


def test_single_style_model_rejects_weights(loaded):
    with pytest.raises(ValueError, match='takes 0 style weights'):
        loaded['float_dynamic'].stylize(make_frame(16, 16), [1.0])


def test_strength_blends_with_the_original(loaded):
    model = loaded['float_dynamic']
    frame = make_frame(48, 64)
    original = model.stylize(frame, strength=0.0)
    assert np.array_equal(original, frame) and original is not frame
    full = model.stylize(frame, strength=1.0).astype(np.int16)
    half = model.stylize(frame, strength=0.5).astype(np.int16)
    assert np.all(np.abs(half - (full + frame) / 2.0) <= 1)
    assert mean_difference(half, frame) > 10 and mean_difference(half, full) > 10


@pytest.mark.parametrize('strength', [-0.1, 1.5, float('nan'), '1'])
def test_invalid_strength_raises(loaded, strength):
    with pytest.raises(ValueError, match='strength'):
        loaded['float_dynamic'].stylize(make_frame(16, 16), strength=strength)


def test_bad_frames_raise(loaded):
    model = loaded['float_dynamic']
    for frame in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                  np.zeros((0, 8, 3), np.uint8), [[0, 0, 0]]):
        with pytest.raises(ValueError, match='uint8 HxWx3'):
            model.stylize(frame)


def test_missing_file_raises_model_error(tmp_path):
    path = str(tmp_path / 'missing.tflite')
    with pytest.raises(ModelError, match='missing.tflite: file does not exist'):
        Stylizer(path)


def test_fifo_or_device_raises_its_real_reason_without_blocking(tmp_path):
    fifo = str(tmp_path / 'fifo.tflite')
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match='fifo.tflite: is a FIFO, not a regular file'):
        Stylizer(fifo)
    with pytest.raises(ModelError, match='/dev/zero: is a character device'):
        Stylizer('/dev/zero')


def test_non_tflite_file_raises_model_error(tmp_path):
    path = tmp_path / 'notes.tflite'
    path.write_text(u'this is not a model at all')
    with pytest.raises(ModelError, match='notes.tflite: not a TFLite model'):
        Stylizer(str(path))


def test_corrupt_tflite_raises_model_error(tmp_path):
    with open(model_path('float_dynamic'), 'rb') as model_file:
        good = model_file.read()
    path = tmp_path / 'corrupt.tflite'
    path.write_bytes(good[:len(good) // 3])
    with pytest.raises(ModelError, match='corrupt.tflite'):
        Stylizer(str(path))


def test_wrong_io_shapes_raise_model_error():
    with pytest.raises(ModelError, match=r'wrong_io.tflite: inputs must be image \[1,H,W,3\]'):
        Stylizer(os.path.join(FIXTURES, 'invalid', 'wrong_io.tflite'))


@pytest.mark.skipif(not os.path.isfile(FRITZ_MODEL), reason='../shared/data (Fritz anchor) absent')
def test_fritz_anchor_model():
    model = Stylizer(FRITZ_MODEL, num_threads=2)
    assert model.fixed_size == (640, 480) and model.num_styles == 0
    frame = make_frame(240, 320)
    out = model.stylize(frame)
    assert out.shape == (240, 320, 3)
    assert mean_difference(out, frame) > 20


def test_unreadable_model_file_is_a_model_error(monkeypatch):
    """A file the process may not read (mode 000 for a non-root user) is refused, not a
    crash: the node turns ModelError into a refused request."""
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path).endswith('.tflite'):
            raise PermissionError(13, 'Permission denied', path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr('builtins.open', refuse)
    with pytest.raises(ModelError) as error:
        Stylizer(model_path('float_dynamic'))
    assert 'cannot read it: Permission denied' in str(error.value)


def test_memory_is_given_back_after_a_size_spike():
    """One huge frame must not leave its tensor arena behind for the small frames after it."""
    model = Stylizer(model_path('float_dynamic'), num_threads=1)
    small = make_frame(48, 64)
    expected = model.stylize(small)
    interpreter = model.runner._interpreter
    model.stylize(make_frame(480, 640))
    assert model.runner._interpreter is interpreter  # growing reuses the interpreter
    assert np.array_equal(model.stylize(small), expected)
    assert model.runner._interpreter is not interpreter  # shrinking 100x starts a fresh one
    assert model.runner.allocated_shape == (48, 64)
