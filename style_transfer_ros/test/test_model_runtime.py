"""model_runtime: runtime selection, tensor identification, quantization and ModelRunner on the
tiny fixture models (see make_fixture_models.py)."""
import os
import sys

import numpy as np
import pytest

from style_transfer_ros import model_runtime
from style_transfer_ros.model_runtime import (ModelRunner, UnusableModel, dequantize,
                                              model_tensors, quantize)
from test_model_contract import imported_modules

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def runner(name, **options):
    return ModelRunner.from_file(os.path.join(FIXTURES, name + '.tflite'), **options)


def detail(name, shape, dtype=np.float32, quantization=(0.0, 0), dynamic=False):
    """A tensor detail as the runtimes report it."""
    signature = [-1 if dynamic and i in (1, 2) else n for i, n in enumerate(shape)]
    return {'name': name, 'index': len(name), 'shape': np.array(shape),
            'shape_signature': np.array(signature), 'dtype': dtype,
            'quantization': quantization}


IMAGE = detail('serving_default_x:0', [1, 1, 1, 3], dynamic=True)
WEIGHTS = detail('w', [1, 6])
OUTPUT = detail('Identity', [1, 1, 1, 3], dynamic=True)


def test_tensors_are_told_apart_by_shape_and_type_not_name_or_order():
    assert model_tensors([IMAGE], [OUTPUT]) == (IMAGE, None, OUTPUT)
    assert model_tensors([WEIGHTS, IMAGE], [OUTPUT]) == (IMAGE, WEIGHTS, OUTPUT)
    uint8_image = detail('in', [1, 480, 640, 3], np.uint8, (1.0, 0))
    assert model_tensors([uint8_image], [OUTPUT])[0] is uint8_image


def test_a_dynamic_image_without_shape_signature_counts_as_an_image():
    old_runtime_image = dict(IMAGE)
    del old_runtime_image['shape_signature']
    assert model_runtime.signature(old_runtime_image) == [1, -1, -1, 3]
    assert model_tensors([old_runtime_image], [OUTPUT])[0] is old_runtime_image


@pytest.mark.parametrize('inputs, outputs, reason', [
    ([IMAGE, IMAGE], [OUTPUT], 'inputs must be image'),
    ([WEIGHTS], [OUTPUT], 'inputs must be image'),
    ([IMAGE, detail('w', [1, 6], np.int32)], [OUTPUT], r'found .* w \[1, 6\] int32'),
    ([IMAGE, detail('w', [6])], [OUTPUT], 'inputs must be image'),
    ([detail('x', [1, 8, 8, 1])], [OUTPUT], 'inputs must be image'),
    ([IMAGE], [], 'output 0 must be'),
    ([IMAGE], [detail('y', [1, 8, 8, 3], np.float16)], 'output 0 must be'),
])
def test_other_tensors_are_refused_with_what_was_found(inputs, outputs, reason):
    with pytest.raises(UnusableModel, match=reason):
        model_tensors(inputs, outputs)


def test_quantization_round_trips_pixel_values():
    uint8_io = detail('q', [1, 8, 8, 3], np.uint8, (1.0, 0))
    pixels = np.arange(256, dtype=np.float64)
    assert np.array_equal(quantize(pixels, uint8_io), np.arange(256))
    assert np.array_equal(dequantize(quantize(pixels, uint8_io), uint8_io), pixels)
    int8 = detail('q', [1, 8, 8, 3], np.int8, (2.0, -128))
    stored = quantize(pixels, int8)
    assert stored.dtype == np.int8 and stored.min() == -128 and stored.max() == 0
    assert np.abs(dequantize(stored, int8) - pixels).max() <= 1.0  # half a step of 2
    assert quantize([-50.0, 1000.0], int8).tolist() == [-128, 127]  # saturates


def test_no_quantization_is_the_identity():
    assert model_runtime.quantization(IMAGE) == (1.0, 0)


def test_runner_finds_the_fixture_models_tensors():
    multi = runner('multi_style')
    assert multi.num_styles == 3 and multi.fixed_size is None
    assert runner('float_dynamic').num_styles == 0
    assert runner('fixed_64x48').fixed_size == (48, 64)
    int8 = runner('int8')
    assert (int8.input_dtype, int8.output_dtype) == (np.int8, np.int8)


def test_runner_output_is_the_raw_float_pixels():
    pixels = np.random.RandomState(0).randint(0, 256, (24, 32, 3)).astype(np.uint8)
    model = runner('multi_style', num_threads=1)
    output = model.run(pixels, [0, 1, 0])
    assert output.dtype == np.float32 and output.shape == (24, 32, 3)
    assert np.array_equal(model.run(pixels.astype(np.float32), [0, 1, 0]), output)
    int8 = runner('int8').run(pixels)
    assert int8.dtype == np.float32 and int8.shape == (24, 32, 3)


def test_runner_refuses_weights_that_do_not_fit():
    pixels = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match='takes 3 style weights'):
        runner('multi_style').run(pixels)
    with pytest.raises(ValueError, match='takes 3 style weights'):
        runner('multi_style').run(pixels, [1, 0])
    with pytest.raises(ValueError, match='takes 0 style weights'):
        runner('float_dynamic').run(pixels, [1.0])


def test_a_fixed_size_model_takes_its_own_size_only():
    model = runner('fixed_64x48')
    assert model.run(np.zeros((48, 64, 3), np.uint8)).shape == (48, 64, 3)
    with pytest.raises(ValueError, match='takes 48x64 images only, got 64x48'):
        model.run(np.zeros((64, 48, 3), np.uint8))


def test_release_starts_a_fresh_interpreter_that_gives_the_same_output():
    pixels = np.full((20, 28, 3), 128, np.uint8)
    model = runner('float_dynamic')
    expected = model.run(pixels)
    model.release()
    assert model.allocated_shape is None
    assert np.array_equal(model.run(pixels), expected)


def test_a_model_that_is_no_style_model_is_unusable():
    with pytest.raises(UnusableModel, match=r'inputs must be image \[1,H,W,3\]'):
        runner(os.path.join('invalid', 'wrong_io'))
    with pytest.raises(UnusableModel, match='the TFLite runtime cannot load it'):
        ModelRunner(b'\x1c\x00\x00\x00TFL3' + bytes(24))


def test_runtime_forced_by_environment(monkeypatch):
    monkeypatch.delenv(model_runtime.RUNTIME_ENV, raising=False)
    name, version, _ = model_runtime.find_runtime()
    monkeypatch.setenv(model_runtime.RUNTIME_ENV, 'no_such_runtime')
    with pytest.raises(RuntimeError, match="STYLE_TRANSFER_TFLITE_RUNTIME='no_such_runtime' is "
                                           'not a known TFLite runtime; use one of '
                                           'ai_edge_litert, tflite_runtime, tensorflow.lite'):
        model_runtime.find_runtime()
    monkeypatch.setenv(model_runtime.RUNTIME_ENV, name)
    assert model_runtime.find_runtime()[:2] == (name, version)


def test_runtime_forced_to_missing_one_lists_what_was_tried(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tflite_runtime', None)  # import fails
    monkeypatch.setattr(model_runtime, '_runtime_cache', {})
    monkeypatch.setenv(model_runtime.RUNTIME_ENV, 'tflite_runtime')
    with pytest.raises(RuntimeError, match='No TFLite runtime found; tried: '
                                           'tflite_runtime.interpreter'):
        model_runtime.find_runtime()


def test_runtime_forced_to_tensorflow(monkeypatch):
    pytest.importorskip('tensorflow')
    monkeypatch.setenv(model_runtime.RUNTIME_ENV, 'tensorflow.lite')
    assert model_runtime.find_runtime()[0] == 'tensorflow.lite'
    model = runner('multi_style')
    assert model.run(np.zeros((32, 32, 3), np.uint8), [0, 0, 1]).shape == (32, 32, 3)


@pytest.mark.parametrize('name, version, target', [
    ('ai_edge_litert', '2.3.0', 'current'), ('ai_edge_litert', '1.0.1', 'current'),
    ('tflite_runtime', '2.5.0.post1', 'nano'), ('tensorflow.lite', '2.6.2', 'nano'),
    ('tensorflow.lite', '2.7.0', 'nano'), ('tflite_runtime', '2.14.0', 'current'),
    ('tensorflow.lite', '2.21.0', 'current')])
def test_runtime_target(name, version, target):
    assert model_runtime.runtime_target(name, version) == target


def test_resize_is_area_down_linear_up_and_the_image_itself_at_its_size():
    small = np.random.RandomState(1).randint(0, 256, (2, 3, 3)).astype(np.uint8)
    blocks = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # each pixel as a 2x2 block
    assert model_runtime.resize(blocks, 4, 6) is blocks
    assert np.array_equal(model_runtime.resize(blocks, 2, 3), small)  # the blocks' means
    assert model_runtime.resize(small, 4, 6).shape == (4, 6, 3)


def test_runtime_needs_only_the_standard_library_numpy_and_opencv():
    """training/ imports it (test_model_contract), and the Jetson Nano runs it on Python 3.6."""
    modules = {m.split('.')[0] for m in imported_modules(model_runtime.__file__)}
    assert modules - {'numpy', 'cv2'} <= set(sys.stdlib_module_names), modules
