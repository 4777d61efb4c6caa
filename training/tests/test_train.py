import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from style_training import data, loss_network, network, train


def test_parse_styles():
    assert data.parse_styles(['a.jpg:2', 'b.png', 'c.jpg:0.5,d.jpg']) == [
        ('a.jpg', 2.0), ('b.png', 1.0), ('c.jpg', 0.5), ('d.jpg', 1.0)]
    assert data.parse_styles(['C:/x/y.jpg']) == [('C:/x/y.jpg', 1.0)]
    with pytest.raises(ValueError):
        data.parse_styles([])


def test_content_dataset_is_seeded_and_sized(content_dir):
    def first(seed):
        return next(iter(data.content_dataset([content_dir], 32, 3, seed=seed))).numpy()
    batch = first(5)
    assert batch.shape == (3, 32, 32, 3) and batch.min() >= 0 and batch.max() <= 255
    np.testing.assert_array_equal(batch, first(5))
    assert not np.array_equal(batch, first(6))


def test_content_dataset_reads_fritz_tfrecords(content_dir, tmp_path):
    path = tmp_path / 'train.tfrecord'
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in sorted(content_dir.iterdir()):
            feature = {data.TFRECORD_IMAGE_KEY: tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[image.read_bytes()]))}
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    batch = next(iter(data.content_dataset([path], 24, 2)))
    assert batch.shape == (2, 24, 24, 3) and float(tf.math.reduce_std(batch)) > 1


def _fixed_batch(content_dir, size=32):
    return next(iter(data.content_dataset([content_dir], size, 2, seed=9)))


def _loss(trainer, batch, weights):
    return float(trainer.losses(batch, tf.constant(weights, tf.float32))['total'])


def test_training_steps_reduce_the_perceptual_loss(content_dir, style_paths):
    vgg = loss_network.build_vgg16_features()
    styles = [(style_paths[0], 1.0)]
    model = network.build_transformer('efficient', 0.25)
    trainer = train.Trainer(model, 1e-2, 1.0, 2.0, 1e-3, vgg=vgg,
                            style_grams=train.style_grams(vgg, styles, 64),
                            mix_weights=np.ones(1), seed=0)
    batch = _fixed_batch(content_dir)
    before = _loss(trainer, batch, [[1.0], [1.0]])
    for _ in range(15):
        trainer.train_step(batch)
    assert _loss(trainer, batch, [[1.0], [1.0]]) < 0.8 * before
    assert int(trainer.step) == 15


def test_mix_mode_trains_towards_the_weighted_gram_targets(style_paths):
    vgg = loss_network.build_vgg16_features()
    styles = [(style_paths[0], 1.0), (style_paths[1], 3.0)]
    grams = train.style_grams(vgg, styles, 64)
    trainer = train.Trainer(network.build_transformer('efficient', 0.25), 1e-3, 1.0, 1.0,
                            vgg=vgg, style_grams=grams, mix_weights=np.array([0.25, 0.75]))
    weights = trainer.sample_style_weights(2).numpy()
    np.testing.assert_allclose(weights, [[0.25, 0.75]] * 2)
    for layer, target in zip(grams, loss_network.blended_grams(grams, weights)):
        np.testing.assert_allclose(target[1], 0.25 * layer[0] + 0.75 * layer[1], rtol=1e-5)


def test_conditional_style_sampling_gives_one_hots_and_blends():
    model = network.build_transformer('efficient', 0.25, num_styles=3)
    one_hots = train.Trainer(model, 1e-3, seed=1).sample_style_weights(64).numpy()
    assert set(one_hots.sum(axis=1)) == {1.0} and set(np.unique(one_hots)) == {0.0, 1.0}
    assert set(one_hots.argmax(axis=1)) == {0, 1, 2}
    blends = train.Trainer(model, 1e-3, blend_probability=1.0, seed=1).sample_style_weights(8)
    np.testing.assert_allclose(blends.numpy().sum(axis=1), 1, rtol=1e-5)
    assert np.all(blends.numpy().max(axis=1) < 1)


def test_distillation_reduces_pixel_loss_without_vgg(content_dir):
    teacher = network.build_transformer('fritz', 0.25)
    trainer = train.Trainer(network.build_transformer('efficient', 0.25), 1e-2,
                            teacher=teacher, seed=0)
    batch = _fixed_batch(content_dir)
    before = trainer.losses(batch, tf.ones([2, 1]))
    assert set(before) == {'distill', 'total'} and trainer.vgg is None
    for _ in range(15):
        trainer.train_step(batch)
    assert float(trainer.losses(batch, tf.ones([2, 1]))['distill']) < 0.8 * float(
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
        losses.append(float(tf.reduce_mean(trainer.stability_loss(batch, None, stylized))))
    noise_only = 2.0 * np.sqrt(2 / np.pi) / 255
    assert losses[0] == pytest.approx(noise_only, rel=0.15)
    assert losses[1] > 2 * noise_only
    trainer = train.Trainer(per_pixel, 1e-3, stability_weight=3.0, seed=5)
    assert set(trainer.losses(batch, tf.ones([2, 1]))) == {'stability', 'total'}


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
    restored.checkpoint.restore(tf.train.latest_checkpoint(tmp_path / 'checkpoints'))
    assert int(restored.step) == 3 and int(restored.optimizer.iterations) == 3
    for expected, value in zip(first.model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(expected, value)

    capsys.readouterr()
    resumed = _train_cli(tmp_path, content_dir, style_paths, 5)
    log = capsys.readouterr().out
    assert 'resumed from' in log and 'step 4/5' in log and 'step 1/5' not in log
    assert int(resumed.step) == 5 and int(resumed.optimizer.iterations) == 5


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
