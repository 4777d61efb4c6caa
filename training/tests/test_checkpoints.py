import json
import shutil

import keras
import numpy as np
import pytest

from conftest import SHARED_DATA
from style_training import checkpoints, network, train
from style_transfer_ros.model_runtime import find_runtime

FRITZ = SHARED_DATA / 'anchors' / 'fritz'
needs_fritz = pytest.mark.skipif(not FRITZ.is_dir(), reason='shared data absent')


def _random_image(height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype(np.float32)


def save_conditional_run(directory, **options):
    """A two-style efficient network with distinct per-style norms (and random new-head
    weights), saved as train.py does."""
    conditional = network.build_transformer('efficient', 0.25, num_styles=2, **options)
    rng = np.random.default_rng(3)
    conditional.set_weights([rng.normal(1, 0.3, w.shape).astype(np.float32) if w.ndim == 2
                             else w + rng.normal(0, 0.05, w.shape).astype(np.float32)
                             for w in conditional.get_weights()])
    directory.mkdir()
    conditional.save(directory / 'model.keras')
    (directory / 'training.json').write_text(json.dumps({
        'styles': [{'name': 'a'}, {'name': 'b'}], 'num_styles': 2, 'architecture': 'efficient',
        'alpha': 0.25, 'image_size': [192, 192], 'command': 'style-train ...',
        'network_options': network.network_options(**options)}))
    return conditional


def test_load_reads_training_json_and_given_values_win(tmp_path):
    save_conditional_run(tmp_path / 'run')
    loaded = checkpoints.load(tmp_path / 'run')
    assert network.style_count(loaded.model) == 2
    assert (loaded.styles, loaded.architecture, loaded.alpha) == (['a', 'b'], 'efficient', 0.25)
    assert (loaded.training_size, loaded.command) == ([192, 192], 'style-train ...')
    given = checkpoints.load(tmp_path / 'run' / 'model.keras', ['x', 'y'], 'fritz', 0.5, (64, 96))
    assert (given.styles, given.architecture, given.alpha) == (['x', 'y'], 'fritz', 0.5)
    assert given.training_size == (64, 96)


def test_load_without_training_json_falls_back_to_the_file_name(tmp_path):
    network.build_transformer('efficient', 0.25).save(tmp_path / 'udnie_320x240.keras')
    loaded = checkpoints.load(tmp_path / 'udnie_320x240.keras')
    assert (loaded.styles, loaded.architecture, loaded.alpha) == (['udnie_320x240'],
                                                                  'efficient', 0.25)
    assert loaded.training_size == [240, 320] and loaded.command is None


def test_select_style_takes_one_style_of_a_conditional_checkpoint(tmp_path):
    conditional = save_conditional_run(tmp_path / 'run')
    single = checkpoints.load(tmp_path / 'run').select_style('b')
    assert single.styles == ['b'] and len(single.model.inputs) == 1
    image = _random_image(24, 32)
    np.testing.assert_allclose(single.model(image),
                               conditional([image, np.array([[0.0, 1.0]])]), atol=1e-3)
    assert np.abs(single.model(image) - conditional([image, np.array([[1.0, 0.0]])])).mean() > 1
    with pytest.raises(ValueError, match="no style 'c'"):
        checkpoints.load(tmp_path / 'run').select_style('c')
    with pytest.raises(ValueError, match="no style 'b'"):
        single.select_style('b')


def test_select_style_rebuilds_the_network_options_of_the_run(tmp_path):
    options = {'padding': 'edge', 'head': 'affine', 'blocks': 4}
    conditional = save_conditional_run(tmp_path / 'run', **options)
    loaded = checkpoints.load(tmp_path / 'run')
    assert loaded.options == network.network_options(**options)
    single = loaded.select_style('a')
    assert single.options == loaded.options
    image = _random_image(30, 41)
    np.testing.assert_allclose(single.model(image),
                               conditional([image, np.array([[1.0, 0.0]])]), atol=1e-3)


@pytest.mark.parametrize('head', ['gain', 'affine', 'refine'])
def test_shipped_network_fine_tunes_into_a_new_head_from_its_own_output(head):
    """The new head's layers keep their zero start: the copy stylizes exactly as the source."""
    source = network.build_transformer('efficient', 0.25)
    rng = np.random.default_rng(8)
    source.set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32)
                        for w in source.get_weights()])
    target = network.build_transformer('efficient', 0.25, num_styles=2, head=head)
    checkpoints.copy_weights(source, target)
    image = _random_image(26, 38)
    expected = source(image).numpy()
    for weights in ([[1.0, 0.0]], [[0.4, 0.6]]):
        np.testing.assert_allclose(target([image, np.array(weights)]), expected, atol=1e-3)
    with pytest.raises(ValueError, match='different architecture|first-version'):  # no head
        checkpoints.copy_weights(target, network.build_transformer('efficient', 0.25))


@pytest.mark.parametrize('source_head', ['colour', 'affine'])
def test_a_paint_head_starts_from_another_heads_body_without_its_colour_mix(source_head):
    """The paint head keeps the source's body and style term and drops its colour mix: at
    the start (gain zero) it paints the source's style term around mid-grey."""
    source = network.build_transformer('efficient', 0.25, head=source_head, padding='edge')
    rng = np.random.default_rng(9)
    source.set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32)
                        for w in source.get_weights()])
    target = network.build_transformer('efficient', 0.25, head='paint', padding='edge')
    checkpoints.copy_weights(source, target)

    def before_clipping(model):
        return keras.Model(model.inputs, model.get_layer('stylized').input)
    image = _random_image(26, 38)
    colours = keras.Model(source.inputs, network.colour_mix(source).output)(image)
    style = before_clipping(source)(image) - colours
    if source_head == 'affine':  # its affine term starts at zero only when fresh
        style -= keras.Model(source.inputs, source.get_layer('affine_sum').output)(image)
    np.testing.assert_allclose(before_clipping(target)(image), style + 127.5, atol=1e-2)
    assert np.abs(np.asarray(colours)).mean() > 1  # the mix left out was not nothing


def test_cli_trains_a_new_head_records_its_options_and_resumes(tmp_path, content_dir):
    """Fine-tuning the shipped layout into --head affine --padding edge: training.json and the
    loaded checkpoint carry the options, and the same command resumes from its checkpoint."""
    save_conditional_run(tmp_path / 'run')
    network.build_transformer('fritz_small', 0.25).save(tmp_path / 'teacher.keras')

    def run(steps):
        return train.train(train.build_parser().parse_args([
            '--teacher', str(tmp_path / 'teacher.keras'),
            '--fine-tune-checkpoint', str(tmp_path / 'run'),
            '--fine-tune-style', 'b', '--content', str(content_dir), '--head', 'affine',
            '--padding', 'edge', '--output-dir', str(tmp_path / 'out'), '--steps', str(steps),
            '--image-size', '32', '--batch-size', '2', '--log-every', '1',
            '--checkpoint-dir', str(tmp_path / 'checkpoints')]))

    first = run(2)
    assert 'local_affine' in [layer.name for layer in first.model.layers]
    settings = json.loads((tmp_path / 'out' / 'training.json').read_text())
    assert settings['network_options'] == {'head': 'affine', 'padding': 'edge', 'blocks': 3,
                                           'quarter_channels': None}
    loaded = checkpoints.load(tmp_path / 'out')
    assert loaded.options == settings['network_options']
    assert int(run(3).optimizer.iterations) == 3  # resumed: one more step


def test_cli_fine_tunes_from_one_style_of_a_conditional_run(tmp_path, content_dir, style_paths):
    conditional = save_conditional_run(tmp_path / 'run')
    trainer = train.train(train.build_parser().parse_args([
        '--style', ','.join(style_paths), '--mode', 'conditional', '--content', str(content_dir),
        '--teacher', str(tmp_path / 'run'), '--fine-tune-checkpoint', str(tmp_path / 'run'),
        '--fine-tune-style', 'b', '--output-dir', str(tmp_path / 'out'), '--steps', '0',
        '--image-size', '32']))
    image = _random_image(24, 32)
    b_alone = conditional([image, np.array([[0.0, 1.0]])])
    for weights in ([[1.0, 0.0]], [[0.0, 1.0]]):  # style b seeds every style
        np.testing.assert_allclose(trainer.model([image, np.array(weights)]), b_alone, atol=1e-3)
    assert trainer.teacher is not None and trainer.vgg is None
    with pytest.raises(SystemExit, match="no style 'c'"):
        train.build_trainer(train.build_parser().parse_args([
            '--content', str(content_dir), '--output-dir', str(tmp_path / 'out'),
            '--teacher', str(tmp_path / 'run'), '--fine-tune-checkpoint',
            str(tmp_path / 'run'), '--fine-tune-style', 'c']))


def test_styles_are_added_to_a_conditional_run_starting_from_their_mean(
        tmp_path, content_dir, style_paths):
    """--style a,b,c from a run of a,b: a and b stylize as before, c as the 50/50 blend of
    them; the run's styles out of order are refused before anything trains."""
    conditional = save_conditional_run(tmp_path / 'run')
    network.build_transformer('fritz_small', 0.25).save(tmp_path / 'teacher.keras')
    named = []
    for name, source in zip('abc', style_paths + style_paths[:1]):
        named.append(str(tmp_path / f'{name}.png'))
        shutil.copyfile(source, named[-1])

    def arguments(styles):
        return train.build_parser().parse_args([
            '--style', ','.join(styles), '--mode', 'conditional', '--content', str(content_dir),
            '--teacher', str(tmp_path / 'teacher.keras'), '--fine-tune-checkpoint',
            str(tmp_path / 'run'), '--output-dir', str(tmp_path / 'out'), '--steps', '0',
            '--image-size', '32'])

    trainer = train.build_trainer(arguments(named))[0]
    image = _random_image(24, 32)
    for added, before in (([1, 0, 0], [1, 0]), ([0, 1, 0], [0, 1]), ([0, 0, 1], [0.5, 0.5])):
        np.testing.assert_allclose(trainer.model([image, np.array([added], np.float32)]),
                                   conditional([image, np.array([before], np.float32)]),
                                   atol=1e-3)
    with pytest.raises(SystemExit, match=r'styles \(a, b\) must come first'):
        train.build_trainer(arguments([named[1], named[0], named[2]]))


def test_first_efficient_network_weights_upgrade_exactly_before_the_output_clip():
    """v1 output: 127.5 tanh(W3 (Wn x) + Wc (image / 127.5 - 1) + bc) + 127.5 per pixel (the
    resize sits between the 1x1 convs and commutes with them); v2 is that with tanh -> clip."""
    rng = np.random.default_rng(4)
    body = [rng.normal(size=(3, 3)).astype(np.float32)]
    narrow, to_rgb = rng.normal(size=(1, 1, 16, 8)), rng.normal(size=(1, 1, 8, 3))
    colours, bias = rng.normal(size=(1, 1, 3, 3)), rng.normal(size=3)
    upgraded = checkpoints.upgrade_efficient_v1(body + [narrow, to_rgb, colours, bias])
    assert upgraded[0] is body[0] and len(upgraded) == 4
    features, image = rng.normal(size=(50, 16)), rng.uniform(0, 255, (50, 3))
    v1 = features @ narrow[0, 0] @ to_rgb[0, 0] + (image / 127.5 - 1) @ colours[0, 0] + bias
    v2 = features @ upgraded[1][0, 0] + (image / 127.5) @ upgraded[2][0, 0] + upgraded[3]
    np.testing.assert_allclose(v2, v1, atol=1e-9)
    with pytest.raises(ValueError, match='first-version'):
        checkpoints.upgrade_efficient_v1(upgraded)


def test_fine_tune_from_a_first_version_efficient_checkpoint():
    weights = network.build_transformer('efficient', 0.25).get_weights()
    rng = np.random.default_rng(1)
    v1_weights = weights[:-3] + [rng.normal(size=(1, 1, 16, 8)).astype(np.float32),
                                 rng.normal(size=(1, 1, 8, 3)).astype(np.float32)] + weights[-2:]

    class V1Checkpoint:
        def get_weights(self):
            return v1_weights

    target = network.build_transformer('efficient', 0.25, num_styles=2)
    checkpoints.copy_weights(V1Checkpoint(), target)
    np.testing.assert_allclose(target.get_weights()[-3][0, 0],
                               v1_weights[-4][0, 0] @ v1_weights[-3][0, 0], rtol=1e-5)
    with pytest.raises(ValueError, match='different architecture'):
        checkpoints.copy_weights(network.build_transformer('fritz', 0.25), target)


@needs_fritz
@pytest.mark.parametrize('name, architecture, alpha', [
    ('starry_night_256x256_025.h5', 'fritz', 0.25),
    ('starry_night.h5', 'fritz', 0.25),
    ('starry_night_256x256_small_a03.h5', 'fritz_small', 0.3),
])
def test_fritz_h5_loads_and_stylizes(name, architecture, alpha):
    from style_training.images import load_image
    from style_transfer_ros.model_runtime import resize
    loaded = checkpoints.load(FRITZ / name)
    assert (loaded.architecture, loaded.alpha) == (architecture, alpha)
    image = resize(load_image(FRITZ / 'reference' / 'dog.jpg'), 256, 256).astype(np.float32)
    output = loaded.model(image[None]).numpy()[0]
    assert output.shape == image.shape
    assert output.min() >= 0 and output.max() <= 255 and output.std() > 20
    assert np.abs(output - image).mean() > 30  # stylized, not a copy


@needs_fritz
def test_fritz_h5_matches_fritz_tflite_export():
    """The Fritz 640x480 TFLite export holds the same weights as starry_night_256x256_025.h5."""
    image = _random_image(640, 480, seed=3)
    interpreter = find_runtime()[2](str(FRITZ / 'starry_night_640x480_025.tflite'))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]['index'], image)
    interpreter.invoke()
    expected = interpreter.get_tensor(interpreter.get_output_details()[0]['index'])
    output = checkpoints.load_fritz_h5(FRITZ / 'starry_night_256x256_025.h5')(image).numpy()
    assert np.abs(output - expected).max() < 0.5


@needs_fritz
def test_fine_tune_from_fritz_h5_into_conditional_network():
    fritz = checkpoints.load_fritz_h5(FRITZ / 'starry_night.h5')
    conditional = network.build_transformer('fritz', 0.25, num_styles=2)
    checkpoints.copy_weights(fritz, conditional)
    image = _random_image(32, 32)
    np.testing.assert_allclose(conditional([image, np.array([[0.0, 1.0]], np.float32)]),
                               fritz(image), atol=1e-3)
