"""Catalog scanning and style selection (no model is run here)."""
import json
import os
import socket

import pytest

from style_transfer_ros.catalog import Catalog, SelectionError, StyleSelection, normalized_weights

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
# A FlatBuffer header with the TFLite identifier: enough for the catalog, which never runs it.
MODEL_STUB = b'\x1c\x00\x00\x00TFL3' + bytes(24)


def add_model(directory, file_name, name=None, style_names=None, target=None, sidecar=True,
              model_bytes=MODEL_STUB):
    """Write a placeholder model and a valid sidecar (a fixture's, renamed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (file_name + '.tflite')).write_bytes(model_bytes)
    if sidecar:
        with open(os.path.join(FIXTURES, 'int8.json')) as fixture:
            metadata = json.load(fixture)
        metadata['name'] = name or file_name
        if style_names:
            metadata['style_names'] = style_names
        if target:
            metadata['target'] = target
        (directory / (file_name + '.json')).write_text(json.dumps(metadata))
    return str(directory / (file_name + '.tflite'))


@pytest.fixture
def catalog():
    return Catalog([FIXTURES])


def test_scan_lists_fixture_models(catalog):
    assert list(catalog.entries) == ['fixed_64x48', 'float_dynamic', 'int8', 'multi_style']
    assert catalog.problems == []
    entry = catalog.entries['multi_style']
    assert entry.style_names == ['warm', 'cool', 'inverse']
    assert entry.model_path == os.path.join(os.path.realpath(FIXTURES), 'multi_style.tflite')
    int8 = catalog.entries['int8']
    assert int8.quantization == 'int8' and int8.style_names == []
    assert int8.artist == 'style_transfer_ros tests'
    assert int8.metadata['format_version'] == 1


def test_models_without_valid_sidecar_are_skipped_with_a_problem(tmp_path):
    add_model(tmp_path, 'good')
    add_model(tmp_path, 'bare', sidecar=False)
    add_model(tmp_path, 'bad_name', name='Bad Name')
    add_model(tmp_path, 'broken')
    (tmp_path / 'broken.json').write_text(u'{not json')
    catalog = Catalog([str(tmp_path), str(tmp_path / 'missing')])
    assert list(catalog.entries) == ['good']
    problems = '\n'.join(catalog.problems)
    assert len(catalog.problems) == 4
    assert 'bare.tflite: no sidecar bare.json; skipped' in problems
    assert "'Bad Name'" in problems
    assert 'unreadable sidecar broken.json' in problems
    assert 'missing does not exist' in problems


def test_duplicate_names_first_directory_wins(tmp_path):
    first = add_model(tmp_path / 'a', 'one', name='same')
    second = add_model(tmp_path / 'b', 'two', name='same')
    catalog = Catalog([str(tmp_path / 'a'), str(tmp_path / 'b')])
    assert catalog.entries['same'].model_path == first
    assert catalog.problems == [
        "{}: name 'same' is already used by {}; skipped".format(second, first)]


@pytest.mark.parametrize('chosen', ['nano', 'current'])
def test_target_picks_the_file_for_the_runtime(tmp_path, chosen):
    add_model(tmp_path / 'a', 'star', target='current')
    add_model(tmp_path / 'b', 'star', target='nano')
    catalog = Catalog([str(tmp_path / 'a'), str(tmp_path / 'b')], target=chosen)
    assert list(catalog.entries) == ['star']
    assert catalog.entries['star'].target == chosen
    assert catalog.problems == []


def test_single_style_resolution(catalog):
    selection = catalog.resolve('float_dynamic')
    assert selection.model_path == catalog.entries['float_dynamic'].model_path
    assert selection.weights is None and selection.entry.name == 'float_dynamic'
    assert selection.description == 'float_dynamic (Test pattern, style_transfer_ros tests)'
    with pytest.raises(SelectionError, match='single-style'):
        catalog.resolve('float_dynamic', blend_weights=[1.0])


def test_multi_style_model_name_gives_equal_or_given_weights(catalog):
    assert catalog.resolve('multi_style').weights == pytest.approx([1 / 3.0] * 3)
    selection = catalog.resolve('multi_style', blend_weights=[1, 1, 2])
    assert selection.weights == pytest.approx([0.25, 0.25, 0.5])
    assert selection.description == 'multi_style: warm 0.25 + cool 0.25 + inverse 0.50'
    with pytest.raises(SelectionError, match='got 2 blend_weights for 3 styles'):
        catalog.resolve('multi_style', blend_weights=[1, 1])


def test_model_slash_style_is_one_hot(catalog):
    selection = catalog.resolve('multi_style/cool')
    assert selection.weights == [0.0, 1.0, 0.0]
    assert selection.description == 'multi_style: cool 1.00'
    with pytest.raises(SelectionError,
                       match='multi_style has no style blue; its styles: warm, cool, inverse'):
        catalog.resolve('multi_style/blue')


def test_blend_styles_find_the_model_holding_them(catalog):
    selection = catalog.resolve('', blend_styles=['warm', 'inverse'], blend_weights=[3, 1])
    assert selection.entry.name == 'multi_style'
    assert selection.weights == pytest.approx([0.75, 0.0, 0.25])
    assert selection.description == 'multi_style: warm 0.75 + inverse 0.25'
    weights = catalog.resolve('', blend_styles=['cool', 'warm']).weights
    assert weights == pytest.approx([0.5, 0.5, 0])


def test_blend_styles_not_in_one_model_lists_models(catalog):
    with pytest.raises(SelectionError, match=r'multi_style \(warm, cool, inverse\)'):
        catalog.resolve('', blend_styles=['warm', 'starry_night'], blend_weights=[1, 1])


@pytest.mark.parametrize('weights', [[1, -1], [float('nan'), 1], [0, 0], [float('inf'), 1], [1]])
def test_bad_blend_weights_raise(catalog, weights):
    with pytest.raises(SelectionError):
        catalog.resolve('', blend_styles=['warm', 'cool'], blend_weights=weights)


@pytest.mark.parametrize('weights, reason', [
    ([1, -1], 'must not be negative'), ([float('nan'), 1], 'must be finite'),
    ([float('inf'), 1], 'must be finite'), ([0, 0], 'must not all be zero'),
    ([1], 'expected 2 style weights, got 1'), (['a', 'b'], 'must be numbers')])
def test_normalized_weights_is_the_one_weight_rule(weights, reason):
    with pytest.raises(ValueError, match=reason):
        normalized_weights(weights, 2)


def test_normalized_weights_scale_to_one_and_default_to_equal():
    assert normalized_weights([1, 3], 2) == [0.25, 0.75]
    assert normalized_weights([], 4) == [0.25] * 4
    assert all(type(w) is float for w in normalized_weights([1, 3], 2))


def test_weights_for_the_loaded_model():
    """What the node and `stylize` run a loaded model with: the selection's weights, equal
    ones for a multi-style file without a sidecar, and a refusal when they do not fit."""
    assert StyleSelection('a.tflite').weights_for(0) is None
    assert StyleSelection('a.tflite').weights_for(3) == pytest.approx([1 / 3.0] * 3)
    assert StyleSelection('a.tflite', weights=[0.5, 0.5]).weights_for(2) == [0.5, 0.5]
    with pytest.raises(SelectionError, match='single-style model: blend weights do not apply'):
        StyleSelection('a.tflite', weights=[0.5, 0.5]).weights_for(0)
    with pytest.raises(SelectionError, match='a.tflite has 3 styles, its sidecar names 2'):
        StyleSelection('a.tflite', weights=[0.5, 0.5]).weights_for(3)


def test_unknown_and_empty_styles_list_available(catalog):
    with pytest.raises(SelectionError, match="unknown style 'starry'; available: fixed_64x48, "):
        catalog.resolve('starry')
    with pytest.raises(SelectionError, match='multi_style/warm'):
        catalog.resolve('')


def test_model_paths_need_allow_model_paths(catalog):
    path = os.path.join(FIXTURES, 'int8.tflite')
    with pytest.raises(SelectionError, match='allow_model_paths is false'):
        catalog.resolve(path)
    selection = catalog.resolve(path, allow_model_paths=True)
    assert selection.entry.name == 'int8'


def test_path_without_sidecar_inside_directory_is_single_style(tmp_path):
    bare = add_model(tmp_path, 'bare', sidecar=False)
    catalog = Catalog([str(tmp_path)])
    for request in (bare, 'bare.tflite', os.path.join(str(tmp_path), 'sub', '..', 'bare.tflite')):
        selection = catalog.resolve(request, allow_model_paths=True)
        assert selection.model_path == os.path.realpath(bare)
        assert selection.entry is None and selection.weights is None
        assert selection.description == os.path.realpath(bare)
    with pytest.raises(SelectionError, match='does not exist'):
        catalog.resolve('other.tflite', allow_model_paths=True)


def test_paths_escaping_the_model_directories_are_rejected(tmp_path):
    models = tmp_path / 'models'
    outside = add_model(tmp_path / 'outside', 'evil', sidecar=False)
    add_model(models, 'good')
    os.symlink(outside, str(models / 'link.tflite'))
    catalog = Catalog([str(models)])
    for request in (outside, os.path.join(str(models), '..', 'outside', 'evil.tflite'),
                    '../outside/evil.tflite', str(models / 'link.tflite'), 'link.tflite'):
        with pytest.raises(SelectionError, match='outside the model directories'):
            catalog.resolve(request, allow_model_paths=True)


@pytest.mark.parametrize('request_', ['../../etc/passwd', '/dev/zero', '~/models/x.tflite',
                                      './int8.tflite', 'int8.tflite'])
def test_path_like_styles_are_paths_not_model_slash_style(catalog, request_):
    with pytest.raises(SelectionError,
                       match=r'model paths are disabled \(allow_model_paths is false\)'):
        catalog.resolve(request_)


@pytest.mark.parametrize('request_', ['../../etc/passwd', '/dev/zero', '~/x.tflite'])
def test_allowed_paths_outside_the_model_directories_are_refused(catalog, request_):
    with pytest.raises(SelectionError, match='outside the model directories'):
        catalog.resolve(request_, allow_model_paths=True)


def test_allowed_path_must_name_a_tflite_file(tmp_path):
    add_model(tmp_path, 'good')
    with pytest.raises(SelectionError, match=r'\./good\.json is not a \.tflite model file'):
        Catalog([str(tmp_path)]).resolve('./good.json', allow_model_paths=True)


LONG = 'x' * 100000


@pytest.mark.parametrize('request_', [
    dict(style=LONG), dict(style='multi_style/' + LONG), dict(style='/' + LONG),
    dict(style='/' + LONG, allow_model_paths=True), dict(style=LONG + '.tflite'),
    dict(style='', blend_styles=[LONG, 'warm']), dict(style='multi_style', blend_styles=[LONG]),
    dict(style='multi_style', blend_styles=['warm'] * 50000),
    dict(style='multi_style/' + LONG, blend_weights=[1.0]),
])
def test_error_messages_echo_at_most_a_clipped_request(catalog, request_):
    with pytest.raises(SelectionError) as error:
        catalog.resolve(**request_)
    message = str(error.value)
    assert len(message) < 1000, message[:200]
    assert '...' in message


def test_corrupt_or_unreadable_model_files_are_not_listed(tmp_path):
    add_model(tmp_path, 'good')
    add_model(tmp_path, 'zeros', model_bytes=b'\x00' * 64)
    add_model(tmp_path, 'header_only', model_bytes=MODEL_STUB[:8])
    add_model(tmp_path, 'folder', model_bytes=b'')
    os.remove(str(tmp_path / 'folder.tflite'))
    os.mkdir(str(tmp_path / 'folder.tflite'))  # opening it raises IsADirectoryError
    catalog = Catalog([str(tmp_path)])
    assert list(catalog.entries) == ['good']
    problems = '\n'.join(catalog.problems)
    assert len(catalog.problems) == 3, problems
    for name in ('zeros', 'header_only'):
        assert '{}.tflite: not a TFLite model (no TFL3 identifier'.format(name) in problems
    assert 'folder.tflite: is a directory, not a regular file' in problems
    with pytest.raises(SelectionError, match=r"style 'zeros' is not usable: .*zeros\.tflite: "
                                             'not a TFLite model'):
        catalog.resolve('zeros')
    with pytest.raises(SelectionError, match='zeros.tflite: not a TFLite model'):
        catalog.resolve('zeros.tflite', allow_model_paths=True)


def test_unreadable_sidecar_is_a_problem_not_a_crash(tmp_path):
    add_model(tmp_path, 'good')
    add_model(tmp_path, 'odd', sidecar=False)
    os.mkdir(str(tmp_path / 'odd.json'))
    catalog = Catalog([str(tmp_path)])
    assert list(catalog.entries) == ['good']
    assert len(catalog.problems) == 1
    assert 'odd.tflite: sidecar odd.json is a directory, not a regular file' in catalog.problems[0]


def _fifo(path):
    os.mkfifo(str(path))
    return str(path)


def test_fifos_sockets_and_devices_are_problems_never_opened(tmp_path):
    """A FIFO blocks open() until a writer comes: the scan must stat, not open."""
    add_model(tmp_path, 'good')
    add_model(tmp_path, 'fifo_model')
    os.remove(str(tmp_path / 'fifo_model.tflite'))
    _fifo(tmp_path / 'fifo_model.tflite')
    add_model(tmp_path, 'fifo_sidecar', sidecar=False)
    _fifo(tmp_path / 'fifo_sidecar.json')
    add_model(tmp_path, 'device', sidecar=False)
    os.symlink('/dev/zero', str(tmp_path / 'device.json'))
    listener = socket.socket(socket.AF_UNIX)
    try:
        add_model(tmp_path, 'sock', sidecar=False)
        listener.bind(str(tmp_path / 'sock.json'))
        catalog = Catalog([str(tmp_path)])
    finally:
        listener.close()
    assert list(catalog.entries) == ['good']
    problems = '\n'.join(catalog.problems)
    assert 'fifo_model.tflite: is a FIFO, not a regular file; skipped' in problems
    assert 'fifo_sidecar.tflite: sidecar fifo_sidecar.json is a FIFO' in problems
    assert 'device.tflite: sidecar device.json is a character device' in problems
    assert 'sock.tflite: sidecar sock.json is a socket' in problems
    with pytest.raises(SelectionError, match=r"style 'fifo_model' is not usable: .*is a FIFO"):
        catalog.resolve('fifo_model')
    with pytest.raises(SelectionError, match='fifo_model.tflite: is a FIFO, not a regular file'):
        catalog.resolve('fifo_model.tflite', allow_model_paths=True)


def test_big_sidecars_are_not_read(tmp_path):
    add_model(tmp_path, 'huge')
    with open(str(tmp_path / 'huge.json'), 'a') as sidecar:
        sidecar.write(' ' * (2 ** 20))
    catalog = Catalog([str(tmp_path)])
    assert not catalog.entries
    assert 'sidecar huge.json is 1' in catalog.problems[0]
    assert 'bytes, more than the 1048576 bytes allowed' in catalog.problems[0]


@pytest.mark.parametrize('text, reason', [
    (u'{not json', 'unreadable sidecar odd.json: Expecting property name'),
    (u'{"name": "odd"}', 'invalid sidecar: missing "format_version"'),
])
def test_requests_for_a_model_with_a_bad_sidecar_say_why(tmp_path, text, reason):
    add_model(tmp_path, 'odd', sidecar=False)
    (tmp_path / 'odd.json').write_text(text)
    with pytest.raises(SelectionError, match="style 'odd' is not usable: .*odd.tflite: " + reason):
        Catalog([str(tmp_path)]).resolve('odd')


@pytest.mark.parametrize('style', ['float_dynamic\n', ' float_dynamic', 'float_dynamic\t',
                                   'multi_style/cool '])
def test_names_are_exact(catalog, style):
    with pytest.raises(SelectionError):
        catalog.resolve(style)


def test_a_rescan_lists_models_added_since_and_keeps_the_painted_one(tmp_path):
    add_model(tmp_path, 'first')
    old = Catalog([str(tmp_path)])
    add_model(tmp_path, 'added')
    (tmp_path / 'first.tflite').write_bytes(b'half a file')  # broken while it is painted
    (tmp_path / '.added.partial').mkdir()  # add_style's staging folder, and a temporary name
    (tmp_path / '.added.partial' / 'staged.tflite').write_bytes(MODEL_STUB)
    (tmp_path / 'staged.tflite.partial').write_bytes(MODEL_STUB)
    fresh = old.rescanned(keep='first')
    assert list(fresh.entries) == ['added', 'first']
    assert fresh.entries['first'] is old.entries['first']
    assert fresh.resolve('added').model_path == str(tmp_path / 'added.tflite')
    assert any('first.tflite: not a TFLite model' in p for p in fresh.problems), fresh.problems
    assert any('first kept from the previous scan' in p for p in fresh.problems)
    assert list(old.entries) == ['first']  # the previous catalog is untouched
    assert list(old.rescanned().entries) == ['added']
