import json
from pathlib import Path

import keras
import numpy as np
import pytest

from style_training import convert
from style_training.checkpoints import Checkpoint
from style_training.convert import (DEFAULT_MIN_PSNR, QUANTIZATIONS, convert_model,
                                    default_weight_vectors, nano_problems, operator_versions,
                                    parity_psnr, synthetic_images)
from style_transfer_ros.model_contract import read_sidecar
from style_transfer_ros.model_runtime import ModelRunner, find_runtime, resize
from tiny_models import constant_model, tiny_stylizer

SHARED_DATA = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data'
FRITZ_H5 = SHARED_DATA / 'anchors' / 'fritz' / 'starry_night_256x256_025.h5'
IMAGES = synthetic_images(2, 40, 56)


@pytest.fixture(scope='module')
def model():
    return tiny_stylizer()


@pytest.mark.parametrize('quantization', QUANTIZATIONS)
def test_each_quantization_matches_keras(model, quantization, tmp_path):
    path = tmp_path / 'model.tflite'
    size = convert_model(model, path, quantization, representative_images=IMAGES)
    assert size == path.stat().st_size > 0
    results = parity_psnr(model, path, IMAGES)
    assert all(r['problem'] is None for r in results)
    assert min(r['psnr'] for r in results) >= DEFAULT_MIN_PSNR[quantization]


@pytest.mark.parametrize('num_styles', [1, 3])
def test_int8_keeps_instance_norm_statistics_float(num_styles, tmp_path):
    """The efficient network, its first conv's channels spread over a decade of scale: fully
    quantized, its first instance norm's DIV met divisors at the zero point and the runtime
    refused to run it, as it refused the trained edge-affine network (SQRT v2 kept both off
    TF 2.6)."""
    from style_training.network import build_transformer
    keras.utils.set_random_seed(0)
    model = build_transformer('efficient', 0.25, num_styles, head='affine', padding='edge')
    first = next(layer for layer in model.layers if layer.__class__.__name__ == 'ScaledConv2D')
    first.kernel.assign(first.kernel * np.logspace(-1, 0, first.kernel.shape[-1]))
    path = tmp_path / 'int8.tflite'
    convert_model(model, path, 'int8', representative_images=IMAGES)
    results = parity_psnr(model, path, IMAGES, default_weight_vectors(num_styles))
    assert all(r['problem'] is None for r in results)
    assert min(r['psnr'] for r in results) >= DEFAULT_MIN_PSNR['int8']
    versions = operator_versions(path)
    assert versions['CONV_2D'] >= 3  # int8 convolutions
    assert nano_problems(versions) == []


def test_dynamic_range_quantization_shrinks_weights(model, tmp_path):
    float_size = convert_model(model, tmp_path / 'float.tflite', 'none')
    dynamic_size = convert_model(model, tmp_path / 'dynamic.tflite', 'dynamic')
    assert dynamic_size < float_size


def test_int8_io_makes_image_uint8(model, tmp_path):
    path = tmp_path / 'int8.tflite'
    convert_model(model, path, 'int8', representative_images=IMAGES, int8_io=True)
    runner = ModelRunner.from_file(path)
    assert runner.input_dtype == np.uint8 and runner.output_dtype == np.uint8
    assert min(r['psnr'] for r in parity_psnr(model, path, IMAGES)) >= DEFAULT_MIN_PSNR['int8']


def test_dynamic_size_runs_at_two_sizes(model, tmp_path):
    path = tmp_path / 'model.tflite'
    convert_model(model, path)
    runner = ModelRunner.from_file(path)
    assert runner.fixed_size is None
    for height, width in ((32, 48), (64, 40)):
        image = synthetic_images(1, height, width)[0]
        expected = np.asarray(model(image[None].astype(np.float32)))[0]
        result = runner.run(image)
        assert result.shape == (height, width, 3)
        np.testing.assert_allclose(result, expected, atol=1e-2)


def test_fixed_size_runs_at_its_size_only(model, tmp_path):
    path = tmp_path / 'fixed.tflite'
    convert_model(model, path, fixed_size=(32, 48))
    runner = ModelRunner.from_file(path)
    assert runner.fixed_size == (32, 48)
    assert runner.run(resize(IMAGES[0], 32, 48)).shape == (32, 48, 3)
    with pytest.raises(ValueError, match='takes 32x48 images only'):
        runner.run(IMAGES[0])
    assert parity_psnr(model, path, IMAGES)[0]['psnr'] >= DEFAULT_MIN_PSNR['none']


def test_multi_style_has_image_then_weights_and_weights_matter(tmp_path):
    model = tiny_stylizer(num_styles=3)
    path = tmp_path / 'multi.tflite'
    convert_model(model, path, 'float16')
    inputs = find_runtime()[2](str(path)).get_input_details()
    assert [d['name'] for d in inputs] == ['image', 'style_weights']
    assert [len(d['shape']) for d in inputs] == [4, 2]
    runner = ModelRunner.from_file(path)
    assert runner.num_styles == 3
    first, second = runner.run(IMAGES[0], [1, 0, 0]), runner.run(IMAGES[0], [0, 1, 0])
    assert np.abs(first - second).mean() > 1.0
    results = parity_psnr(model, path, IMAGES, default_weight_vectors(3))
    assert len(results) == 2 * 4
    assert min(r['psnr'] for r in results) >= DEFAULT_MIN_PSNR['float16']


def test_select_style_extracts_one_style_of_a_conditional_model(tmp_path):
    from style_training.network import build_transformer
    model = build_transformer('efficient', 0.25, num_styles=3)
    for layer in model.layers:  # distinct per-style norms, so the styles differ
        if layer.__class__.__name__ == 'InstanceNorm':
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([w + rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    single = Checkpoint(model, ['a', 'b', 'c'], 'efficient', 0.25, [256, 256]).select_style(
        'b').model
    assert len(single.inputs) == 1
    image = IMAGES[0][None].astype(np.float32)
    expected = model([image, np.eye(3, dtype=np.float32)[1:2]]).numpy()
    other = model([image, np.eye(3, dtype=np.float32)[0:1]]).numpy()
    assert np.allclose(single(image).numpy(), expected, atol=1e-3)
    assert np.abs(expected - other).mean() > 1
    path = tmp_path / 'single.tflite'
    convert_model(single, path, 'none')
    assert ModelRunner.from_file(path).num_styles == 0
    assert min(r['psnr'] for r in parity_psnr(single, path, IMAGES)) >= DEFAULT_MIN_PSNR['none']
    with pytest.raises(ValueError, match="no style 'a'"):
        Checkpoint(tiny_stylizer(), ['a'], 'efficient', 0.25, [256, 256]).select_style('a')


def test_parity_flags_constant_output(tmp_path):
    model = constant_model()
    path = tmp_path / 'constant.tflite'
    convert_model(model, path)
    assert {r['problem'] for r in parity_psnr(model, path, IMAGES)} == {'constant output'}


def test_nano_op_table(model, tmp_path):
    path = tmp_path / 'float16.tflite'
    convert_model(model, path, 'float16')
    versions = operator_versions(path)
    assert 'CONV_2D' in versions and 'DEQUANTIZE' in versions
    assert nano_problems(versions) == []
    assert nano_problems({'TILE': 3}) == ['TILE v3 (TF 2.5 has up to v2)']
    assert 'not in the TF 2.5 table' in nano_problems({'GELU': 1})[0]


def test_nano_warns_on_int8(capsys):
    with pytest.raises(SystemExit, match='int8 needs --representative-dir'):
        convert.main(['unused.keras', '--target', 'nano', '--quantization', 'int8'])
    assert 'int8 models ran ~12x slower' in capsys.readouterr().err


def save_training_dir(model, directory, **training):
    directory.mkdir()
    model.save(directory / 'model.keras')
    (directory / 'training.json').write_text(json.dumps(training))


def test_cli_writes_model_and_sidecar(model, tmp_path, capsys):
    save_training_dir(model, tmp_path / 'run', architecture='efficient', alpha=0.5,
                      image_size=[128, 128], command='style-train --style udnie.jpg',
                      styles=[{'name': 'udnie', 'path': 'styles/udnie.jpg', 'weight': 1.0}])
    out = tmp_path / 'out'
    assert convert.main([str(tmp_path / 'run'), '--output-dir', str(out), '--quantization',
                         'float16', '--target', 'nano', '--sample-count', '2']) == 0
    printed = capsys.readouterr().out
    assert 'KiB' in printed and 'parity mean' in printed
    metadata = read_sidecar(out / 'udnie.json')
    assert (out / 'udnie.tflite').exists()
    assert metadata['painting'] == 'Udnie (1913)'
    assert metadata['training_size'] == [128, 128]
    assert metadata['alpha'] == 0.5
    assert metadata['target'] == 'nano' and metadata['nano_compatible']
    assert metadata['training_command'] == 'style-train --style udnie.jpg'


def test_cli_fails_loudly_below_threshold(model, tmp_path):
    save_training_dir(model, tmp_path / 'run', styles=[{'name': 'udnie', 'path': 'udnie.jpg'}])
    with pytest.raises(SystemExit, match='PARITY CHECK FAILED'):
        convert.main([str(tmp_path / 'run'), '--output-dir', str(tmp_path / 'out'),
                      '--min-psnr', '200', '--sample-count', '1'])
    assert not (tmp_path / 'out' / 'udnie.json').exists()


def test_cli_refuses_a_sidecar_the_node_would_refuse_before_converting(tmp_path):
    """Two styles of one name: the node's catalog would skip the model."""
    save_training_dir(tiny_stylizer(num_styles=2), tmp_path / 'run')
    out = tmp_path / 'out'
    with pytest.raises(SystemExit, match='style_names .* must be at least two unique'):
        convert.main([str(tmp_path / 'run'), '--output-dir', str(out), '--name', 'duo',
                      '--style', 'udnie,udnie', '--sample-count', '1'])
    assert not out.exists()


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert.main(['--help'])
    assert exit_info.value.code == 0
    assert '--quantization' in capsys.readouterr().out


def test_fritz_h5_converts(tmp_path):
    if not FRITZ_H5.exists():
        pytest.skip(f'shared data not found at {SHARED_DATA}')
    assert convert.main([str(FRITZ_H5), '--output-dir', str(tmp_path), '--quantization',
                         'float16', '--sample-count', '1', '--sample-size', '96']) == 0
    metadata = read_sidecar(tmp_path / 'starry_night.json')
    assert metadata['architecture'] == 'fritz'
    assert metadata['alpha'] == 0.25
    assert metadata['training_size'] == [256, 256]
