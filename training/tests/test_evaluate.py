import csv
import json
import math

import cv2
import keras
import numpy as np
import pytest
from keras import layers

from style_training import evaluate
from style_training.convert import convert_model
from style_training.evaluate import (Ruler, camera_sequence, flicker_ratio, frame_line, halo,
                                     luminance_ssim, parse_model_spec)
from style_training.images import PSNR_CAP_DB, psnr
from tiny_models import identity_model, textured_image, tiny_stylizer

IMAGE = textured_image(48, 64)


@pytest.fixture(scope='module')
def ruler_features():
    """Two random conv layers standing in for VGG: the metric formulas, not the weights, are
    under test here."""
    keras.utils.set_random_seed(0)
    image = keras.Input((None, None, 3))
    first = layers.Conv2D(8, 3, activation='relu')(layers.Rescaling(1 / 255)(image))
    second = layers.Conv2D(8, 3, strides=2, activation='relu')(first)
    return keras.Model(image, [first, second])


def test_identical_images_have_zero_distances(ruler_features):
    ruler = Ruler(IMAGE, ruler_features, content_index=1, texture_indices=[1])
    figures = ruler.measure(IMAGE.astype(np.float32), ruler.photo(IMAGE))
    assert figures['style_distance'] == pytest.approx(0, abs=1e-6)
    assert figures['content_distance'] == pytest.approx(0, abs=1e-6)
    other = textured_image(48, 64, seed=1)
    figures = ruler.measure(other.astype(np.float32), ruler.photo(IMAGE))
    assert figures['style_distance'] > 0.01 and figures['content_distance'] > 0.01


def synthetic_paintings():
    """Three 48x64 paintings whose palettes and textures differ: red-blue stripes, grey
    checkers and green dots."""
    y, x = np.mgrid[:48, :64]
    stripes = np.stack([(x // 4 % 2) * 255, np.full_like(x, 40), (1 - x // 4 % 2) * 200], -1)
    checkers = np.stack([((x // 8 + y // 8) % 2) * 230] * 3, -1)
    dots = np.stack([np.full_like(x, 30), 90 + 150 * ((x % 6 < 2) & (y % 6 < 2)),
                     np.full_like(x, 20)], -1)
    return {name: image.astype(np.float32)
            for name, image in (('stripes', stripes), ('checkers', checkers), ('dots', dots))}


def test_layer_distances_are_one_for_the_photo_and_fall_toward_the_painting(ruler_features):
    paintings = synthetic_paintings()
    ruler = Ruler(paintings['stripes'], ruler_features, content_index=1, texture_indices=[0, 1])
    photo = textured_image(48, 64, seed=3).astype(np.float32)
    steps = [ruler.measure(photo + share * (paintings['stripes'] - photo), ruler.photo(photo))
             for share in (0.0, 0.5, 1.0)]
    assert steps[0]['layer_distances'] == [1.0, 1.0]
    for layer in range(2):
        assert steps[0]['layer_distances'][layer] > steps[1]['layer_distances'][layer] > 0.01
        assert steps[2]['layer_distances'][layer] == pytest.approx(0, abs=1e-9)


def test_nearest_painting_is_the_one_each_output_leans_toward(ruler_features):
    """A known answer: each output is 70 % one painting, 30 % the photo; the photo itself
    ties (every painting is exactly as far as from the photo) and names none."""
    paintings = synthetic_paintings()
    others = {name: image for name, image in paintings.items() if name != 'stripes'}
    ruler = Ruler(paintings['stripes'], ruler_features, content_index=1, paintings=others,
                  style_name='stripes', texture_indices=[0, 1])
    assert set(ruler.painting_grams) == {'stripes', 'checkers', 'dots'}
    for seed in range(4):
        photo = textured_image(48, 64, seed=seed).astype(np.float32)
        seen = ruler.photo(photo)
        for name, painting in paintings.items():
            assert ruler.measure(0.3 * photo + 0.7 * painting, seen)['nearest'] == name
        assert ruler.measure(photo, seen)['nearest'] is None
    with pytest.raises(ValueError, match='two paintings'):
        Ruler(paintings['stripes'], ruler_features, content_index=1, paintings=paintings,
              style_name='stripes', texture_indices=[0, 1])


def test_nearest_name_needs_a_unique_minimum():
    assert evaluate.nearest_name({'a': 0.5, 'b': 0.2, 'c': 0.9}) == 'b'
    assert evaluate.nearest_name({'a': 0.2, 'b': 0.2, 'c': 0.9}) is None
    assert evaluate.nearest_name({'a': 3.0}) == 'a'


def test_ssim_is_one_for_identical_and_lower_for_constant():
    assert luminance_ssim(IMAGE, IMAGE) == pytest.approx(1.0, abs=1e-5)
    assert luminance_ssim(np.full_like(IMAGE, 128), IMAGE) < 0.5


def test_psnr_identical_is_capped_and_nan_propagates():
    assert psnr(IMAGE, IMAGE) == PSNR_CAP_DB
    assert math.isnan(psnr(np.full(IMAGE.shape, np.nan), IMAGE))
    assert 20 < psnr(IMAGE, np.clip(IMAGE + 10.0, 0, 255)) < 30


def test_camera_sequence_pans():
    frames, maps = camera_sequence(IMAGE, frames=3)
    assert len(frames) == 3 and frames[0].shape == (43, 58, 3)
    assert maps[1][0, 2] - maps[0][0, 2] < -2.5  # content moves left by ~3 px per frame


def test_flicker_of_identity_is_one_and_noise_flickers():
    assert flicker_ratio(lambda frame: frame.astype(np.float32), IMAGE) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = lambda frame: frame + rng.normal(0, 20, frame.shape)  # noqa: E731
    assert flicker_ratio(noisy, IMAGE) > 2.0


def test_frame_line_is_zero_for_the_photo_and_high_for_a_bright_border():
    photo = textured_image(96, 128)
    assert frame_line(photo, photo) == pytest.approx(0, abs=1e-6)
    bordered = photo.astype(np.float32)
    bordered[:3] = bordered[-3:] = 255
    bordered[:, :3] = bordered[:, -3:] = 255
    assert frame_line(bordered, photo) > 30
    one_side = photo.astype(np.float32)
    one_side[:, -2:] += 60  # right two columns +60, as the issue describes
    assert 4 < frame_line(one_side, photo) < frame_line(bordered, photo)
    cancelling = photo.astype(np.float32)
    cancelling[0] += 60  # a bright top row over a dark line at rows 2-3: a 4-px mean hides it
    cancelling[2:4] -= 30
    assert frame_line(cancelling, photo) > 4
    larger = cv2.resize(photo, (256, 192), interpolation=cv2.INTER_LINEAR)
    assert abs(frame_line(larger, photo)) < 1  # compared at the photo's size


def edge_photo(seed=0):
    """A bright rectangle on a dark background with mild sensor noise, and its mask."""
    rng = np.random.default_rng(seed)
    inside = np.zeros((96, 128), bool)
    inside[24:72, 32:96] = True
    photo = np.where(inside[..., None], [200, 190, 150], [40, 70, 90]).astype(np.float32)
    return np.clip(photo + rng.normal(0, 3, photo.shape), 0, 255), inside


def test_halo_rises_with_a_ring_along_edges_but_not_with_tint_contrast_or_texture():
    photo, inside = edge_photo()
    assert halo(photo, photo) == pytest.approx(0, abs=1e-6)
    grow = lambda mask, px: cv2.dilate(  # noqa: E731
        mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)
    glow = photo.copy()
    glow[grow(inside, 4) & ~grow(inside, 1)] += 50  # bright ring on the dark side
    undershoot = photo.copy()
    undershoot[grow(~inside, 4) & ~grow(~inside, 1)] -= 50  # dark ring on the bright side
    tinted = photo * [1.15, 1.0, 0.8]
    contrast = (photo - 128) * 1.4 + 128  # stays within 0..255
    textured = photo + np.random.default_rng(1).normal(0, 15, photo.shape)
    ringing = min(halo(glow, photo), halo(undershoot, photo))
    calm = max(halo(tinted, photo), halo(contrast, photo), halo(textured, photo))
    assert ringing > 5
    assert calm < 1.5
    assert halo(np.clip(glow * 1.5 - 40, 0, 255), photo) > 5  # a contrast change hides no halo


def test_halo_loss_is_the_halo_figure_and_gradient_steps_remove_a_ring():
    import tensorflow as tf
    from style_training.loss_network import halo_loss
    photo, inside = edge_photo()
    ring = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~inside
    glow = photo.copy()
    glow[ring] += 50
    textured = photo + np.random.default_rng(1).normal(0, 15, photo.shape)
    outputs = np.stack([glow, textured, photo]).astype(np.float32)
    losses = halo_loss(tf.constant(outputs), tf.constant(np.stack([photo] * 3), tf.float32))
    np.testing.assert_allclose(losses.numpy(), [halo(out, photo) for out in outputs],
                               rtol=1e-3, atol=2e-3)
    image = tf.Variable(glow[None].astype(np.float32))
    optimizer = tf.keras.optimizers.Adam(2.0)
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = halo_loss(image, tf.constant(photo[None], tf.float32))
        optimizer.apply_gradients([(tape.gradient(loss, image), image)])
    assert halo(image.numpy()[0], photo) < 0.3 * halo(glow, photo)


def test_chroma_halo_loss_sees_a_coloured_glow_that_luminance_misses():
    import tensorflow as tf
    from style_training.loss_network import halo_loss
    photo, inside = edge_photo()
    ring = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~inside
    blue = photo.copy()
    blue[ring] += [-20, -10, 103]  # bluer at the same luminance
    batch = tf.constant(np.stack([blue, photo]).astype(np.float32))
    photos = tf.constant(np.stack([photo, photo]).astype(np.float32))
    luminance_only, with_chroma = halo_loss(batch, photos), halo_loss(batch, photos, chroma=True)
    assert float(luminance_only[0]) < 1.0
    assert float(with_chroma[0]) > 5 * float(luminance_only[0]) + 3
    assert float(with_chroma[1]) == pytest.approx(0, abs=2e-3)


def test_parse_model_spec():
    assert parse_model_spec('a/b.tflite') == ('a/b.tflite', None)
    assert parse_model_spec('classics.tflite:1,0,0.5') == ('classics.tflite', [1.0, 0.0, 0.5])


def test_cli_scores_models_and_writes_reports(tmp_path, capsys):
    content = tmp_path / 'content'
    content.mkdir()
    for seed in range(2):
        cv2.imwrite(str(content / f'{seed}.png'), textured_image(60, 80, seed))
    paintings = tmp_path / 'paintings'
    paintings.mkdir()
    style = paintings / 'style.png'
    cv2.imwrite(str(style), textured_image(60, 60, seed=5))
    cv2.imwrite(str(paintings / 'other.jpg'), textured_image(60, 60, seed=6))
    (paintings / 'variants').mkdir()  # subfolders are not paintings
    cv2.imwrite(str(paintings / 'variants' / 'crop.png'), textured_image(60, 60, seed=7))
    convert_model(identity_model(), tmp_path / 'identity.tflite')
    convert_model(tiny_stylizer(num_styles=2), tmp_path / 'multi.tflite')
    out = tmp_path / 'report'
    assert evaluate.main([
        '--model', str(tmp_path / 'identity.tflite'),
        '--model', f'{tmp_path / "multi.tflite"}:0,1',
        '--reference-model', str(tmp_path / 'identity.tflite'), '--content-dir', str(content),
        '--style-image', str(style), '--size', '64', '--frames', '3', '--timing-runs', '2',
        '--output-dir', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '| identity |' in printed and 'among 2 paintings' in printed
    reader = csv.DictReader(open(out / 'evaluation.csv'))
    assert reader.fieldnames[:7] == ['model', 'style_distance', 'content_distance', 'style_block1',
                                     'style_block2', 'style_block3', 'style_block4']
    rows = {row['model']: row for row in reader}
    assert set(rows) == {'input', 'identity', 'multi[0,1]'}
    identity = rows['identity']
    assert float(identity['content_distance']) < 1e-4
    assert float(identity['ssim']) > 0.999
    assert float(identity['flicker']) == pytest.approx(1.0, abs=1e-3)
    assert float(identity['psnr_vs_ref']) == PSNR_CAP_DB
    assert float(identity['style_distance']) == pytest.approx(
        float(rows['input']['style_distance']), rel=1e-3)
    assert float(rows['multi[0,1]']['content_distance']) > 0.01
    for label in ('input', 'identity'):
        assert float(rows[label]['frame_line']) == pytest.approx(0, abs=1e-3)
        assert float(rows[label]['halo']) == pytest.approx(0, abs=1e-3)
    assert float(rows['multi[0,1]']['halo']) > 0
    for label in ('input', 'identity'):  # the photo: as far as itself, and nearest to no painting
        assert [float(rows[label][f'style_block{n}']) for n in range(1, 5)] == [1.0] * 4
        assert rows[label]['recognised'] == '0'
    assert 0 <= int(rows['multi[0,1]']['recognised']) <= 2
    report = json.loads((out / 'evaluation.json').read_text())
    assert report['settings']['images'] == ['0.png', '1.png']
    assert report['paintings'] == ['style', 'other']
    assert report['nearest']['identity'] == [None, None]
    assert set(report['nearest']['multi[0,1]']) <= {'style', 'other'}
    grid = cv2.imread(str(out / 'grid.png'))
    assert grid.shape[1] > 3 * 100  # input + two models side by side


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(['--help'])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert 'flicker' in help_text and 'frame_line' in help_text and 'halo' in help_text
    assert 'style_block1' in help_text and 'recognised' in help_text
