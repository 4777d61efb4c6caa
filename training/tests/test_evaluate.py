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
from style_training.evaluate import (Ruler, camera_sequence, flicker_ratio, luminance_ssim,
                                     parse_model_spec)
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
    ruler = Ruler(IMAGE, ruler_features, content_index=1)
    style, content = ruler.distances(IMAGE.astype(np.float32), IMAGE)
    assert style == pytest.approx(0, abs=1e-6)
    assert content == pytest.approx(0, abs=1e-6)
    other = textured_image(48, 64, seed=1)
    style, content = ruler.distances(other.astype(np.float32), IMAGE)
    assert style > 0.01 and content > 0.01


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


def test_parse_model_spec():
    assert parse_model_spec('a/b.tflite') == ('a/b.tflite', None)
    assert parse_model_spec('classics.tflite:1,0,0.5') == ('classics.tflite', [1.0, 0.0, 0.5])


def test_cli_scores_models_and_writes_reports(tmp_path, capsys):
    content = tmp_path / 'content'
    content.mkdir()
    for seed in range(2):
        cv2.imwrite(str(content / f'{seed}.png'), textured_image(60, 80, seed))
    style = tmp_path / 'style.png'
    cv2.imwrite(str(style), textured_image(60, 60, seed=5))
    convert_model(identity_model(), tmp_path / 'identity.tflite')
    convert_model(tiny_stylizer(num_styles=2), tmp_path / 'multi.tflite')
    out = tmp_path / 'report'
    assert evaluate.main([
        '--model', str(tmp_path / 'identity.tflite'), '--model', f'{tmp_path / "multi.tflite"}:0,1',
        '--reference-model', str(tmp_path / 'identity.tflite'), '--content-dir', str(content),
        '--style-image', str(style), '--size', '64', '--frames', '3', '--timing-runs', '2',
        '--output-dir', str(out)]) == 0
    assert '| identity |' in capsys.readouterr().out
    rows = {row['model']: row for row in csv.DictReader(open(out / 'evaluation.csv'))}
    assert set(rows) == {'input', 'identity', 'multi[0,1]'}
    identity = rows['identity']
    assert float(identity['content_distance']) < 1e-4
    assert float(identity['ssim']) > 0.999
    assert float(identity['flicker']) == pytest.approx(1.0, abs=1e-3)
    assert float(identity['psnr_vs_ref']) == PSNR_CAP_DB
    assert float(identity['style_distance']) == pytest.approx(
        float(rows['input']['style_distance']), rel=1e-3)
    assert float(rows['multi[0,1]']['content_distance']) > 0.01
    report = json.loads((out / 'evaluation.json').read_text())
    assert report['settings']['images'] == ['0.png', '1.png']
    grid = cv2.imread(str(out / 'grid.png'))
    assert grid.shape[1] > 3 * 100  # input + two models side by side


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(['--help'])
    assert exit_info.value.code == 0
    assert 'flicker' in capsys.readouterr().out
