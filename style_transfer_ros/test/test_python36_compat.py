"""The Jetson Nano job: every shipped model runs under Python 3.6 and TensorFlow 2.6's
tf.lite (the Nano's JetPack 4.6 stack) and matches the current runtime (PSNR >= 40 dB).

Needs .venv36 from scripts/setup_env.sh (pyenv's Python 3.6). Skipped without it on a
developer machine; in CI (CI=true) a missing .venv36 is a failure, not a skip.
"""
import glob
import os
import subprocess

import numpy as np
import pytest

from run_models_py36 import reference_frame, run

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(PACKAGE_ROOT)
PYTHON36 = os.path.join(REPO, '.venv36', 'bin', 'python')
SHIPPED = sorted(glob.glob(os.path.join(PACKAGE_ROOT, 'models', '*.tflite')))
FIXTURES = sorted(glob.glob(os.path.join(HERE, 'fixtures', '*.tflite')))
MIN_PSNR = 40.0

if not os.path.exists(PYTHON36) and os.environ.get('CI') != 'true':
    pytest.skip('no .venv36 (run scripts/setup_env.sh on a machine with Python 3.6)',
                allow_module_level=True)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope='module')
def nano_results(tmp_path_factory):
    assert os.path.exists(PYTHON36), 'CI needs .venv36 for the Jetson Nano job'
    out = str(tmp_path_factory.mktemp('py36') / 'outputs.npz')
    env = dict(os.environ, STYLE_TRANSFER_TFLITE_RUNTIME='tensorflow')
    env.pop('PYTHONPATH', None)
    completed = subprocess.run(
        [PYTHON36, os.path.join(HERE, 'run_models_py36.py'), out] + SHIPPED + FIXTURES,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=900)
    assert completed.returncode == 0, completed.stdout[-4000:]
    report = os.path.join(REPO, 'build', 'python36_compat.txt')
    os.makedirs(os.path.dirname(report), exist_ok=True)
    with open(report, 'w') as f:
        f.write(completed.stdout)
    return dict(np.load(out))


def test_runs_under_python36_and_tensorflow_26(nano_results):
    assert str(nano_results['runtime']).startswith('tensorflow')
    assert str(nano_results['runtime']).split()[-1].startswith('2.6')


@pytest.mark.parametrize('index, model', list(enumerate(SHIPPED + FIXTURES)),
                         ids=[os.path.basename(m) for m in SHIPPED + FIXTURES])
def test_model_matches_current_runtime(nano_results, index, model):
    current, _ = run(model, reference_frame(), repeats=0)
    nano = nano_results['output_%d' % index]
    assert nano.shape == current.shape
    assert psnr(nano, current) >= MIN_PSNR
