import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from style_training import checkpoints, convert, data, loss_network, network, train
from style_training.convert import operator_versions
from style_transfer_ros.model_runtime import ModelRunner, find_runtime


def test_parse_styles():
    assert data.parse_styles(['a.jpg:2', 'b.png', 'c.jpg:0.5,d.jpg']) == [
        ('a.jpg', 2.0), ('b.png', 1.0), ('c.jpg', 0.5), ('d.jpg', 1.0)]
    assert data.parse_styles(['C:/x/y.jpg']) == [('C:/x/y.jpg', 1.0)]
    with pytest.raises(ValueError):
        data.parse_styles([])


def test_content_batches_are_seeded_sized_and_resume_where_they_left_off(content_dir):
    def batch(seed, step=0, start=0):
        return data.ContentBatches([content_dir], 32, 3, 10, seed=seed, start=start)[
            step - start]['content']
    first = batch(5)
    assert first.shape == (3, 32, 32, 3) and first.min() >= 0 and first.max() <= 255
    np.testing.assert_array_equal(first, batch(5))
    assert not np.array_equal(first, batch(6))
    np.testing.assert_array_equal(batch(5, step=4), batch(5, step=4, start=3))
    assert len(data.ContentBatches([content_dir], 32, 3, 10, start=3)) == 7


def test_content_batches_read_image_arrays_and_add_the_extras(tmp_path):
    colours = np.random.default_rng(0).integers(0, 256, (5, 1, 1, 3), np.uint8)
    np.savez_compressed(tmp_path / 'crops.npz', images=np.tile(colours, [1, 40, 48, 1]))
    batches = data.ContentBatches([tmp_path / 'crops.npz'], 32, 2, 3,
                                  extras=lambda content, rng: {'mean': content.mean((1, 2))})
    batch = batches[1]
    assert batch['content'].shape == (2, 32, 32, 3)
    assert {tuple(colour) for colour in batch['mean']} <= {tuple(c) for c in colours[:, 0, 0]}


def test_content_dataset_reads_fritz_tfrecords(content_dir, tmp_path):
    path = tmp_path / 'train.tfrecord'
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in sorted(content_dir.iterdir()):
            feature = {data.TFRECORD_IMAGE_KEY: tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[image.read_bytes()]))}
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    batch = data.ContentBatches([path], 24, 2, 1)[0]['content']
    assert batch.shape == (2, 24, 24, 3) and float(batch.std()) > 1


def _fixed_batch(content_dir, size=32):
    return data.ContentBatches([content_dir], size, 2, 1, seed=9)[0]['content']


def _loss(trainer, batch, weights):
    return float(trainer.loss_terms(trainer.inputs_for(batch, weights))['total'])


def _fit_steps(trainer, batch, steps, weights=None):
    """steps updates on one batch (and one draw of the random inputs)."""
    trainer.fit(trainer.inputs_for(batch, weights), batch_size=len(batch), epochs=steps,
                verbose=0, shuffle=False)


def test_training_steps_reduce_the_perceptual_loss(content_dir, style_paths):
    vgg = loss_network.build_vgg16_features()
    styles = [(style_paths[0], 1.0)]
    model = network.build_transformer('efficient', 0.25)
    trainer = train.Trainer(model, 1e-2, 1.0, 2.0, 1e-3, vgg=vgg,
                            style_grams=train.style_grams(vgg, styles, 64),
                            mix_weights=np.ones(1), seed=0)
    batch = _fixed_batch(content_dir)
    before = _loss(trainer, batch, [[1.0], [1.0]])
    _fit_steps(trainer, batch, 15)
    assert _loss(trainer, batch, [[1.0], [1.0]]) < 0.8 * before
    assert int(trainer.optimizer.iterations) == 15


def test_mix_mode_trains_towards_the_weighted_gram_targets(style_paths):
    vgg = loss_network.build_vgg16_features()
    styles = [(style_paths[0], 1.0), (style_paths[1], 3.0)]
    grams = train.style_grams(vgg, styles, 64)
    trainer = train.Trainer(network.build_transformer('efficient', 0.25), 1e-3, 1.0, 1.0,
                            vgg=vgg, style_grams=grams, mix_weights=np.array([0.25, 0.75]))
    weights = trainer.sample_style_weights(2)
    np.testing.assert_allclose(weights, [[0.25, 0.75]] * 2)
    for layer, target in zip(grams, loss_network.blended_grams(grams, weights)):
        np.testing.assert_allclose(target[1], 0.25 * layer[0] + 0.75 * layer[1], rtol=1e-5)


def test_conditional_style_sampling_gives_one_hots_and_blends():
    model = network.build_transformer('efficient', 0.25, num_styles=3)
    one_hots = train.Trainer(model, 1e-3, seed=1).sample_style_weights(64)
    assert set(one_hots.sum(axis=1)) == {1.0} and set(np.unique(one_hots)) == {0.0, 1.0}
    assert set(one_hots.argmax(axis=1)) == {0, 1, 2}
    blends = train.Trainer(model, 1e-3, blend_probability=1.0, seed=1).sample_style_weights(8)
    np.testing.assert_allclose(blends.sum(axis=1), 1, rtol=1e-5)
    assert np.all(blends.max(axis=1) < 1)


def test_distillation_reduces_pixel_loss_without_vgg(content_dir):
    teacher = network.build_transformer('fritz', 0.25)
    trainer = train.Trainer(network.build_transformer('efficient', 0.25), 1e-2,
                            teacher=teacher, seed=0)
    batch = _fixed_batch(content_dir)
    before = trainer.loss_terms(trainer.inputs_for(batch))
    assert set(before) == {'distill', 'total'} and trainer.vgg is None
    _fit_steps(trainer, batch, 15)
    assert float(trainer.loss_terms(trainer.inputs_for(batch))['distill']) < 0.8 * float(
        before['distill'])


def test_stability_loss_measures_change_under_small_camera_motion(content_dir):
    """A per-pixel network moves exactly with the content, so only the sensor noise is left
    (E|N(0, 2)| / 255); strided convolutions with random weights do not."""
    batch = _fixed_batch(content_dir, size=48)
    image = keras.Input((None, None, 3))
    per_pixel = keras.Model(image, keras.layers.Rescaling(1.0)(image))
    losses = []
    for model in (per_pixel, network.build_transformer('efficient', 0.25)):
        trainer = train.Trainer(model, 1e-3, stability_weight=1.0, seed=5)
        stylized = train.stylize(model, batch, None)
        inputs = trainer.inputs_for(batch)
        losses.append(float(np.mean(trainer.stability_loss(inputs, stylized))))
    noise_only = 2.0 * np.sqrt(2 / np.pi) / 255
    assert losses[0] == pytest.approx(noise_only, rel=0.15)
    assert losses[1] > 2 * noise_only
    trainer = train.Trainer(per_pixel, 1e-3, stability_weight=3.0, seed=5)
    assert set(trainer.loss_terms(trainer.inputs_for(batch))) == {'stability', 'total'}


def test_halo_weight_adds_the_weighted_halo_loss(content_dir):
    batch = _fixed_batch(content_dir, size=48)
    model = network.build_transformer('efficient', 0.25)
    trainer = train.Trainer(model, 1e-3, halo_weight=0.5, seed=5)
    losses = trainer.loss_terms(trainer.inputs_for(batch))
    assert set(losses) == {'halo', 'total'}
    expected = 0.5 * tf.reduce_mean(loss_network.halo_loss(train.stylize(model, batch, None),
                                                           batch))
    assert float(losses['halo']) == pytest.approx(float(expected), rel=1e-5)
    assert float(losses['halo']) > 0


def _train_cli(tmp_path, content_dir, style_paths, steps, *extra):
    return train.train(train.build_parser().parse_args([
        '--style', f'{style_paths[0]}:1,{style_paths[1]}:2', '--mode', 'conditional',
        '--content', str(content_dir), '--output-dir', str(tmp_path / 'out'),
        '--image-size', '32', '--batch-size', '2', '--steps', str(steps),
        '--checkpoint-dir', str(tmp_path / 'checkpoints'), '--checkpoint-every', '2',
        '--log-every', '1', '--style-size', '64', *extra]))


def test_cli_checkpoint_resume_and_export(tmp_path, content_dir, style_paths, capsys):
    first = _train_cli(tmp_path, content_dir, style_paths, 3, '--preview-every', '3')
    saved = keras.saving.load_model(tmp_path / 'out' / 'model.keras', compile=False)
    assert [i.shape[-1] for i in saved.inputs] == [3, 2]
    for expected, value in zip(first.model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(expected, value)
    settings = json.loads((tmp_path / 'out' / 'training.json').read_text())
    assert settings['num_styles'] == 2 and settings['mode'] == 'conditional'
    assert [s['weight'] for s in settings['styles']] == [1.0, 2.0]
    assert settings['architecture'] == 'efficient' and settings['image_size'] == [32, 32]
    assert (tmp_path / 'out' / 'previews' / 'step_0000003.png').exists()

    # A fresh trainer restored from the checkpoint has the same step, weights and optimizer.
    model = network.build_transformer('efficient', 0.25, num_styles=2)
    restored = train.Trainer(model, 1e-3)
    restored.optimizer.build(model.trainable_variables)
    state = checkpoints.latest_training_state(tmp_path / 'checkpoints')
    assert state.name == 'ckpt-3.optimizer.npz'
    assert checkpoints.restore_training_state(state, model, restored.optimizer) == 3
    assert int(restored.optimizer.iterations) == 3
    for expected, value in zip(first.model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(expected, value)
    for expected, value in zip(first.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(value))

    capsys.readouterr()
    resumed = _train_cli(tmp_path, content_dir, style_paths, 5)
    log = capsys.readouterr().out
    assert 'resumed from' in log and 'step 4/5' in log and 'step 1/5' not in log
    assert int(resumed.optimizer.iterations) == 5
    assert sorted(path.name for path in (tmp_path / 'checkpoints').iterdir()) == [
        f'ckpt-{step}.{kind}' for step in (3, 4, 5) for kind in ('optimizer.npz', 'weights.h5')]


def test_fine_tuning_keeps_the_checkpoints_network_options(tmp_path, content_dir, style_paths):
    """Unset --head/--padding/... mean "as the fine-tune checkpoint", not "the default"."""
    start = tmp_path / 'start'
    first = train.train(train.build_parser().parse_args([
        '--style', str(style_paths[0]), '--content', str(content_dir), '--output-dir',
        str(start), '--image-size', '32', '--batch-size', '2', '--steps', '1',
        '--head', 'affine', '--padding', 'edge']))
    tuned = train.build_trainer(train.build_parser().parse_args([
        '--style', str(style_paths[0]), '--content', str(content_dir), '--output-dir',
        str(tmp_path / 'tuned'), '--image-size', '32', '--fine-tune-checkpoint',
        str(start / 'model.keras')]))[0]
    assert tuned.model.get_layer('local_affine') is not None
    for expected, value in zip(first.model.get_weights(), tuned.model.get_weights()):
        np.testing.assert_array_equal(expected, value)


def _logged_losses(log):
    """{step: {loss name: value}} from a training log."""
    return {int(step): {name: float(value) for name, value in re.findall(r'([a-z]+) (\S+)', rest)
                        if name != 'images'}
            for step, rest in re.findall(r'^step (\d+)/\d+ (.*)$', log, re.MULTILINE)}


def _assert_finite(losses):
    assert losses and all(np.isfinite(value) for step in losses.values()
                          for value in step.values()), losses


def _run_on_two_cpus(code):
    """Run code in a fresh Python whose TensorFlow has two logical CPU devices and no GPU
    (set before TensorFlow initializes, so not in this process); returns its output."""
    setup = (
        'import tensorflow as tf\n'
        'tf.config.set_visible_devices([], "GPU")\n'
        'tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],'
        ' [tf.config.LogicalDeviceConfiguration()] * 2)\n'
        'from style_training import train\n')
    result = subprocess.run([sys.executable, '-c', setup + code], capture_output=True,
                            text=True, env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_a_mirrored_step_is_the_one_device_step_on_the_global_batch(tmp_path, content_dir,
                                                                    style_paths):
    """Two replicas with 2 images each make the update one device makes on the batch of 4:
    the same losses, weights and Adam moments (which, unlike Adam's first step, scale with
    the gradient, so a wrong per-replica loss scaling shows). Mix mode without the stability
    loss: nothing random, as the random streams differ per replica."""
    args = ['--style', style_paths[0], '--content', str(content_dir), '--image-size', '32',
            '--batch-size', '4', '--steps', '1', '--style-size', '64', '--log-every', '1']
    logs = []
    for distribute in ('mirrored', 'none'):
        run = args + ['--distribute', distribute, '--output-dir', str(tmp_path / distribute),
                      '--checkpoint-dir', str(tmp_path / f'checkpoints_{distribute}')]
        logs.append(_run_on_two_cpus(f'train.main({run!r})'))
    assert '--distribute mirrored: 2 device(s)' in logs[0]
    assert '--distribute none: 1 device(s)' in logs[1]
    assert_same_update(tmp_path / 'checkpoints_mirrored', tmp_path / 'checkpoints_none', *logs)


def assert_same_update(distributed, single, distributed_log, single_log, rel=2e-3):
    """Two training states after step 1 (and their logs) hold the same update: the same
    losses, weights and Adam moments (which, unlike Adam's first step, scale with the
    gradient, so a wrong per-replica loss scaling shows)."""
    distributed_losses, single_losses = map(_logged_losses, (distributed_log, single_log))
    _assert_finite(distributed_losses)
    assert distributed_losses[1] == pytest.approx(single_losses[1], rel=rel)
    with np.load(distributed / 'ckpt-1.optimizer.npz') as value, \
            np.load(single / 'ckpt-1.optimizer.npz') as expected:
        assert sorted(value) == sorted(expected)
        arrays = [(value[name], expected[name]) for name in expected]
    model = network.build_transformer('efficient', 0.25)
    for folder in (distributed, single):
        model.load_weights(folder / 'ckpt-1.weights.h5')
        arrays.append(model.get_weights())
    arrays[-2:] = list(zip(*arrays[-2:]))
    compared = 0
    for value, expected in arrays:
        if value.dtype == np.float32 and value.ndim:
            np.testing.assert_allclose(value, expected, rtol=0,
                                       atol=1e-3 * np.abs(expected).max() + 1e-12)
            compared += 1
    assert compared == 3 * len(model.weights)  # the weights and both Adam moments of each


def test_checkpoints_resume_with_and_without_mirroring(tmp_path, content_dir, style_paths):
    """A mirrored run resumes on one device and back (the variables are the same), with the
    random streams (conditional style sampling, stability loss) drawn on every replica."""
    args = ['--style', f'{style_paths[0]},{style_paths[1]}', '--mode', 'conditional',
            '--style-weight', '0', '--content-weight', '0', '--tv-weight', '1',
            '--stability-weight', '1', '--content', str(content_dir), '--image-size', '32',
            '--batch-size', '4', '--log-every', '1', '--output-dir', str(tmp_path / 'out'),
            '--checkpoint-dir', str(tmp_path / 'checkpoints')]
    log = _run_on_two_cpus(''.join(
        f'train.main({args!r} + ["--steps", "{steps}", "--distribute", "{distribute}"])\n'
        for steps, distribute in ((1, 'mirrored'), (2, 'none'), (3, 'mirrored'))))
    assert log.count('--distribute mirrored: 2 device(s)') == 2
    assert 'ckpt-1.optimizer.npz at step 1' in log and 'ckpt-2.optimizer.npz at step 2' in log
    losses = _logged_losses(log)
    _assert_finite(losses)
    assert sorted(losses) == [1, 2, 3] and set(losses[3]) == {'tv', 'stability', 'total'}
    assert checkpoints.latest_training_state(tmp_path / 'checkpoints').name == (
        'ckpt-3.optimizer.npz')
    assert checkpoints.load(tmp_path / 'out').model.inputs[1].shape[-1] == 2


def test_mirrored_refuses_a_batch_that_does_not_split_over_the_replicas(content_dir, tmp_path):
    log = _run_on_two_cpus(f"""
try:
    train.main(['--teacher', 'unused.keras', '--content', {str(content_dir)!r}, '--output-dir',
                {str(tmp_path)!r}, '--batch-size', '3', '--distribute', 'mirrored'])
except SystemExit as error:
    print(error)
""")
    assert '--batch-size 3 (the global batch) does not split evenly over 2 devices' in log


def test_an_overflow_on_one_replica_skips_the_step_on_all():
    """ReplicaLossScaleOptimizer, unlike Keras' LossScaleOptimizer, which looks at the first
    replica's gradients only, skips a step that overflowed on the second (instead of adding
    inf)."""
    log = _run_on_two_cpus("""
import keras
strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
with strategy.scope():
    weight = keras.Variable(1.0)
    optimizer = train.ReplicaLossScaleOptimizer(keras.optimizers.SGD(0.1))
    optimizer.build([weight])

def replica_step():
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    optimizer.apply([tf.where(replica == 1, float('inf'), 1.0)], [weight])

tf.function(lambda: strategy.run(replica_step))()
print('weight', float(weight.numpy()), 'scale', float(optimizer.dynamic_scale.numpy()))
""")
    assert f'weight 1.0 scale {2.0 ** 14}' in log


def test_mixed_precision_trains_and_saves_the_float32_network(tmp_path, content_dir,
                                                              style_paths, capsys):
    first = _train_cli(tmp_path, content_dir, style_paths, 9, '--mixed-precision',
                       '--stability-weight', '1')
    log = capsys.readouterr()
    _assert_finite(_logged_losses(log.out))
    if not tf.config.list_physical_devices('GPU'):
        assert 'warning: --mixed-precision without a GPU' in log.err
    assert first.model.get_layer('stylized').compute_dtype == 'float16'
    assert keras.mixed_precision.global_policy().name == 'float32'  # restored after building
    # The first updates overflow at the initial loss scale (skipped, the scale halves); once
    # it is low enough, Adam steps.
    assert float(first.optimizer.dynamic_scale) < 2 ** 15 and int(first.optimizer.iterations) > 0
    settings = json.loads((tmp_path / 'out' / 'training.json').read_text())
    assert settings['mixed_precision'] is True and settings['distribute'] == 'none'

    saved = checkpoints.load(tmp_path / 'out').model
    assert {layer.dtype_policy.name for layer in saved.layers} == {'float32'}
    assert {weight.dtype for weight in saved.weights} == {'float32'}
    assert saved.output.dtype == 'float32'
    for expected, value in zip(first.model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(expected, value)
    # It converts as the same weights in a network built in float32: the same float32 ops
    # and output (the files differ in layer names only).
    built = network.build_transformer('efficient', 0.25, num_styles=2)
    built.set_weights(saved.get_weights())
    paths = [tmp_path / 'saved.tflite', tmp_path / 'built.tflite']
    for model, path in zip((saved, built), paths):
        convert.convert_model(model, path)
    assert operator_versions(paths[0]) == operator_versions(paths[1])
    interpreter = find_runtime()[2](str(paths[0]))
    assert {d['dtype'] for d in interpreter.get_tensor_details()} == {np.float32, np.int32}
    image = _fixed_batch(content_dir)[0]
    np.testing.assert_array_equal(*(ModelRunner.from_file(path).run(image, [0.5, 0.5])
                                    for path in paths))

    # The checkpoint holds the loss scale and Adam's state, and resumes (in float32 too).
    model = network.build_transformer('efficient', 0.25, num_styles=2)
    restored = train.Trainer(model, 1e-3, mixed_precision=True)
    restored.optimizer.build(model.trainable_variables)
    checkpoints.restore_training_state(tmp_path / 'checkpoints' / 'ckpt-9.optimizer.npz',
                                       model, restored.optimizer)
    assert float(restored.optimizer.dynamic_scale) == float(first.optimizer.dynamic_scale)
    assert int(restored.optimizer.iterations) == int(first.optimizer.iterations)
    for expected, value in zip(first.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(value))
    _train_cli(tmp_path, content_dir, style_paths, 10, '--mixed-precision')
    _train_cli(tmp_path, content_dir, style_paths, 11)
    log = capsys.readouterr().out
    assert 'ckpt-9.optimizer.npz at step 9' in log and 'ckpt-10.optimizer.npz at step 10' in log
    _assert_finite(_logged_losses(log))
