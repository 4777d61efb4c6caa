"""add_style: a new style row trained alone on a tiny conditional network; Ctrl-C and resume."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
from style_transfer_ros.model_contract import read_sidecar

from style_training import add_style, checkpoints, network, style_curve, train


def _tiny_checkpoint(folder):
    """A two-style efficient network with distinct random instance-norm rows, saved as a
    training output (model.keras + training.json), as the shipped classics is."""
    keras.utils.set_random_seed(3)
    model = network.build_transformer('efficient', 0.25, num_styles=2)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, network.InstanceNorm):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.3, layer.beta.shape))
    folder.mkdir()
    model.save(folder / 'model.keras')
    (folder / 'training.json').write_text(json.dumps({
        'styles': [{'name': 'warm'}, {'name': 'cool'}], 'architecture': 'efficient',
        'alpha': 0.25, 'network_options': network.network_options(), 'image_size': [32, 32]}))
    return folder


def _options(tmp_path, content_dir, painting, *extra):
    return [str(painting), '--name', 'added', '--checkpoint', str(tmp_path / 'tiny'),
            '--content', str(content_dir), '--output-dir', str(tmp_path / 'models'),
            '--work-dir', str(tmp_path / 'work'), '--image-size', '32', '--style-size', '64',
            '--batch-size', '2', '--checkpoint-every', '1000', *extra]


def test_adding_a_style_trains_its_row_alone_and_keeps_the_others_bit_identical(
        tmp_path, content_dir, style_paths):
    source = checkpoints.load(_tiny_checkpoint(tmp_path / 'tiny'))
    args = add_style.build_parser().parse_args(_options(tmp_path, content_dir, style_paths[0],
                                                        '--steps', '3'))
    trainer, style_weights = add_style.build_style_trainer(source, style_paths[0], args)
    assert style_weights.tolist() == [[0.0, 0.0, 1.0]]
    norms = [layer for layer in trainer.model.layers if isinstance(layer, network.InstanceNorm)]
    for layer in norms:  # the new row starts from the mean of the others
        table = layer.gamma.numpy()
        np.testing.assert_allclose(table[2], table[:2].mean(axis=0), rtol=1e-6)
    start = [weight.numpy() for weight in trainer.model.weights]
    steps = train.fit(trainer, add_style.fit_args(args, tmp_path / 'work', 600),
                      tmp_path / 'work')
    assert steps == 3
    sources = {id(w): v for w, v in zip(trainer.model.weights, source.model.get_weights())}
    rows = [id(layer.gamma) for layer in norms] + [id(layer.beta) for layer in norms]
    for weight, before in zip(trainer.model.weights, start):
        after = weight.numpy()
        if id(weight) in rows:
            np.testing.assert_array_equal(after[:2], sources[id(weight)])
            assert not np.array_equal(after[2], before[2]), weight.path
        else:
            np.testing.assert_array_equal(after, before)
    image = np.random.default_rng(0).uniform(0, 255, (1, 40, 48, 3)).astype(np.float32)
    for index in range(2):
        old = np.eye(2, dtype=np.float32)[index][None]
        new = np.eye(3, dtype=np.float32)[index][None]
        np.testing.assert_array_equal(np.asarray(source.model([image, old])),
                                      np.asarray(trainer.model([image, new])))


def test_ctrl_c_leaves_a_resumable_state_and_no_model_file(tmp_path, content_dir,
                                                           style_paths, capsys):
    _tiny_checkpoint(tmp_path / 'tiny')
    options = _options(tmp_path, content_dir, style_paths[1], '--painting-title',
                       'Checkers (2026)', '--artist', 'A. Tester', '--licence', 'CC0')
    run = subprocess.Popen(
        [sys.executable, '-m', 'style_training.add_style', *options, '--steps', '1000'],
        cwd=Path(train.__file__).parents[1], stdout=subprocess.PIPE, text=True,
        env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
    for line in run.stdout:  # the handler is installed before this line
        if line.startswith('adding added'):
            break
    run.send_signal(signal.SIGINT)
    log = run.stdout.read()
    assert run.wait(timeout=300) == add_style.INTERRUPTED, log
    state = checkpoints.latest_training_state(tmp_path / 'work' / 'checkpoints')
    assert state is not None and 'stopped at step' in log
    stopped = int(checkpoints.STATE_PATTERN.match(state.name)[1])
    assert not (tmp_path / 'work' / 'model.keras').exists()
    assert not (tmp_path / 'models').exists() or not list((tmp_path / 'models').iterdir())

    capsys.readouterr()
    assert add_style.main([*options, '--steps', str(stopped + 1)]) == 0  # the same command
    assert f'at step {stopped}' in capsys.readouterr().out  # resumed from the state
    model = checkpoints.load(tmp_path / 'work')
    assert model.styles == ['warm', 'cool', 'added']
    written = sorted(path.name for path in (tmp_path / 'models').iterdir())
    assert written == ['added.json', 'added.tflite', 'tiny_added.json', 'tiny_added.tflite']
    single = read_sidecar(str(tmp_path / 'models' / 'added.json'))
    assert (single['painting'], single['artist'], single['licence']) == (
        'Checkers (2026)', 'A. Tester', 'CC0')
    combined = read_sidecar(str(tmp_path / 'models' / 'tiny_added.json'))
    assert combined['style_names'] == ['warm', 'cool', 'added']
    assert combined['styles'][2]['painting'] == 'Checkers (2026)'
    assert json.loads((tmp_path / 'work' / 'training.json').read_text())['steps_done'] == (
        stopped + 1)


def test_the_curve_scores_every_nth_state_and_the_last(tmp_path):
    folder = tmp_path / 'checkpoints'
    folder.mkdir()
    for step in (10, 20, 30, 40):
        (folder / f'ckpt-{step}.optimizer.npz').write_bytes(b'')
        (folder / f'ckpt-{step}.weights.h5').write_bytes(b'')
    assert [step for step, _, _ in style_curve.states(tmp_path, 2)] == [10, 30, 40]
    assert [weights.name for _, weights, _ in style_curve.states(tmp_path, 3)] == [
        'ckpt-10.weights.h5', 'ckpt-40.weights.h5']
