"""What the cross-backend tests run alike on TensorFlow (in the test process) and on JAX (in a
subprocess with KERAS_BACKEND=jax, as the backend is chosen at import)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
STEP_WEIGHTS = {'content_weight': 1.0, 'style_weight': 2.0, 'tv_weight': 0.1,
                'stability_weight': 1.0, 'halo_weight': 0.5}


def run_on(backend, code, **env):
    """Run code in a fresh Python on a Keras backend (its modules importable); its output."""
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        env={**os.environ, 'KERAS_BACKEND': backend, **env,
             'PYTHONPATH': os.pathsep.join([str(TESTS)] + sys.path)})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def training_steps(model_path, inputs_path, style_path, steps=8):
    """Losses of the saved network on the saved inputs: before, after one update and after
    `steps` updates (every loss of the trainer on, VGG16 included) as a dict."""
    from style_training import loss_network, train
    import keras
    model = keras.saving.load_model(model_path, compile=False)
    vgg = loss_network.build_vgg16_features()
    trainer = train.Trainer(model, 1e-2, vgg=vgg, mix_weights=np.ones(1),
                            style_grams=train.style_grams(vgg, [(style_path, 1.0)], 64),
                            **STEP_WEIGHTS)
    with np.load(inputs_path) as saved:
        inputs = dict(saved)

    def losses():
        return {name: float(value) for name, value in trainer.loss_terms(inputs).items()}
    found = {'before': losses()}
    for name, count in (('one_step', 1), ('steps', steps - 1)):
        trainer.fit(inputs, batch_size=len(inputs['content']), epochs=count, verbose=0,
                    shuffle=False)
        found[name] = losses()
    return found


def print_training_steps(*args):
    print('LOSSES', json.dumps(training_steps(*args)))
