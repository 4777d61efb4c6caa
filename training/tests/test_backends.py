"""The trainer on TensorFlow (this process) and JAX (subprocesses): the same step, a network
trained under JAX converted under TensorFlow, checkpoints resumed across backends, and
keras.distribution.DataParallel."""
import json
import re

import keras
import numpy as np
import pytest

from backend_runs import run_on, training_steps
from style_training import checkpoints, convert, data, network, train
from style_training.images import save_image
from style_transfer_ros.model_runtime import ModelRunner
from test_train import _logged_losses, assert_same_update

pytest.importorskip('jax')


def test_one_step_gives_the_same_losses_on_tensorflow_and_jax(tmp_path, content_dir,
                                                              style_paths):
    """Same weights, batch and random draws: every loss agrees to 1e-4 (relative) before
    and after one Adam step on the two backends (float32 kernels differ in summation order
    only), and a few steps lower the total loss on each."""
    model = network.build_transformer('efficient', 0.25, padding='edge', head='affine')
    model.save(tmp_path / 'model.keras')
    trainer = train.Trainer(model, 1e-2, stability_weight=1.0, halo_weight=1.0)
    batch = data.ContentBatches([content_dir], 32, 2, 1, seed=3)[0]['content']
    np.savez(tmp_path / 'inputs.npz', **trainer.inputs_for(batch))
    args = (str(tmp_path / 'model.keras'), str(tmp_path / 'inputs.npz'), style_paths[0])
    on_jax = json.loads(re.search(r'^LOSSES (.*)$', run_on(
        'jax', f'from backend_runs import print_training_steps\nprint_training_steps{args}'),
        re.MULTILINE)[1])
    on_tensorflow = training_steps(*args)
    for backend in (on_tensorflow, on_jax):
        assert set(backend['before']) == {'content', 'style', 'tv', 'stability', 'halo',
                                          'total'}
        assert backend['steps']['total'] < 0.8 * backend['before']['total'], backend
    for stage in ('before', 'one_step'):
        assert on_jax[stage] == pytest.approx(on_tensorflow[stage], rel=1e-4), stage


@pytest.fixture(scope='module')
def runs_across_backends(tmp_path_factory):
    """A run started on TensorFlow (2 steps), resumed on JAX (to 3; it also writes its Keras
    output of a fixed image) and again on TensorFlow (to 4): (folder, JAX log, last log)."""
    folder = tmp_path_factory.mktemp('across')
    for name, colour in (('content', (40, 120, 200)), ('style', (200, 60, 20))):
        (folder / name).mkdir()
        rng = np.random.default_rng(len(name))
        for index in range(3):
            image = np.clip(rng.normal(colour, 40, (40, 48, 3)), 0, 255).astype(np.uint8)
            np.save(folder / name / f'{index}.npy', image[None])
    style = folder / 'style.png'
    save_image(style, np.load(folder / 'style' / '0.npy')[0])
    args = ['--style', str(style), '--content', str(folder / 'content'), '--image-size', '32',
            '--batch-size', '2', '--style-weight', '0', '--content-weight', '0',
            '--tv-weight', '1', '--log-every', '1',
            '--stability-weight', '1', '--output-dir', str(folder / 'out'),
            '--checkpoint-dir', str(folder / 'checkpoints'), '--checkpoint-every', '1']
    train.main(args + ['--steps', '2'])
    image = np.random.default_rng(5).uniform(0, 255, (1, 36, 44, 3)).astype(np.float32)
    np.save(folder / 'image.npy', image)
    jax_log = run_on('jax', f"""
import numpy as np
from style_training import checkpoints, train
train.main({args + ['--steps', '3']!r})
model = checkpoints.load({str(folder / 'out')!r}).model
output = np.asarray(model(np.load({str(folder / 'image.npy')!r})))
np.save({str(folder / 'jax_output.npy')!r}, output)
""")
    (folder / 'jax_model.keras').write_bytes((folder / 'out' / 'model.keras').read_bytes())
    return folder, jax_log, args


def test_a_network_trained_under_jax_converts_under_tensorflow(runs_across_backends,
                                                               tmp_path):
    folder, jax_log, _ = runs_across_backends
    assert 'backend jax' in jax_log
    model = checkpoints.load(folder / 'jax_model.keras').model
    image = np.load(folder / 'image.npy')
    jax_output = np.load(folder / 'jax_output.npy')
    np.testing.assert_allclose(np.asarray(model(image)), jax_output, atol=1e-3)
    convert.convert_model(model, tmp_path / 'jax.tflite')
    tflite_output = ModelRunner.from_file(tmp_path / 'jax.tflite').run(image[0])
    np.testing.assert_allclose(tflite_output, jax_output[0], atol=0.05)
    assert jax_output.std() > 1


def test_a_checkpoint_written_on_one_backend_resumes_on_another(runs_across_backends, capsys):
    folder, jax_log, args = runs_across_backends
    assert re.search(r'resumed from \S+ckpt-2\.optimizer\.npz at step 2', jax_log)
    assert 'step 3/3' in jax_log and 'step 2/3' not in jax_log
    jax_state = folder / 'checkpoints' / 'ckpt-3.weights.h5'
    capsys.readouterr()
    train.main(args + ['--steps', '4'])
    log = capsys.readouterr().out
    assert 'ckpt-3.optimizer.npz at step 3' in log and sorted(_logged_losses(log)) == [4]
    # TensorFlow read JAX's update: its weights are the network JAX saved at step 3.
    model = network.build_transformer('efficient', 0.25)
    model.load_weights(jax_state)
    jax_model = keras.saving.load_model(folder / 'jax_model.keras', compile=False)
    for expected, value in zip(jax_model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(expected, value)


def test_data_parallel_on_two_jax_devices_is_the_one_device_step(tmp_path, content_dir):
    """keras.distribution.DataParallel on two (host) devices makes the update one device
    makes on the whole batch (TV and stability losses, whose shift and noise come with the
    batch and are split with it; no VGG, to be quick)."""
    args = ['--style-weight', '0', '--content-weight', '0', '--tv-weight', '1',
            '--stability-weight', '1', '--content', str(content_dir), '--image-size', '32',
            '--batch-size', '4', '--steps', '1', '--log-every', '1']
    code = ''.join(
        f'train.main({args!r} + ["--distribute", "{distribute}", "--output-dir", '
        f'"{tmp_path / distribute}", "--checkpoint-dir", "{tmp_path / distribute}_state"])\n'
        f'print("END {distribute}")\n' for distribute in ('mirrored', 'none'))
    log = run_on('jax', 'from style_training import train\n' + code,
                 XLA_FLAGS='--xla_force_host_platform_device_count=2')
    distributed_log, single_log = log.split('END mirrored')
    assert '--distribute mirrored: 2 device(s), backend jax' in distributed_log
    assert '--distribute none: 1 device(s)' in single_log
    assert_same_update(tmp_path / 'mirrored_state', tmp_path / 'none_state', distributed_log,
                       single_log)
