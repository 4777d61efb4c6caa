"""Catalog scanning and style selection (no model is run here)."""
import json
import os

import pytest

from style_transfer_ros.catalog import Catalog, SelectionError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def add_model(directory, file_name, name=None, style_names=None, target=None, sidecar=True):
    """Write a placeholder model (the catalog never reads it) and its sidecar."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (file_name + '.tflite')).write_bytes(b'\x1c\x00\x00\x00TFL3')
    if sidecar:
        metadata = {'format_version': 1, 'name': name or file_name, 'painting': 'P',
                    'artist': 'A', 'description': 'D', 'licence': 'L', 'quantization': 'int8'}
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
    entry = catalog.get('multi_style')
    assert entry.style_names == ['warm', 'cool', 'inverse']
    assert entry.model_path == os.path.join(os.path.realpath(FIXTURES), 'multi_style.tflite')
    assert catalog.get('int8').quantization == 'int8'
    assert catalog.get('int8').style_names == []
    assert catalog.get('int8').artist == 'style_transfer_ros tests'
    assert catalog.get('int8').metadata['format_version'] == 1
    assert catalog.get('nope') is None


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
    assert catalog.get('same').model_path == first
    assert catalog.problems == ["{}: name 'same' is already used by {}; skipped".format(second, first)]


@pytest.mark.parametrize('chosen', ['nano', 'current'])
def test_target_picks_the_file_for_the_runtime(tmp_path, chosen):
    add_model(tmp_path / 'a', 'star', target='current')
    add_model(tmp_path / 'b', 'star', target='nano')
    catalog = Catalog([str(tmp_path / 'a'), str(tmp_path / 'b')], target=chosen)
    entry = catalog.get('star')
    assert entry.target == chosen
    assert [alt.target for alt in entry.alternatives] == [{'nano': 'current', 'current': 'nano'}[chosen]]
    assert catalog.problems == []


def test_single_style_resolution(catalog):
    selection = catalog.resolve('float_dynamic')
    assert selection.model_path == catalog.get('float_dynamic').model_path
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
    with pytest.raises(SelectionError, match='multi_style has no style blue; its styles: warm, cool, inverse'):
        catalog.resolve('multi_style/blue')


def test_blend_styles_find_the_model_holding_them(catalog):
    selection = catalog.resolve('', blend_styles=['warm', 'inverse'], blend_weights=[3, 1])
    assert selection.entry.name == 'multi_style'
    assert selection.weights == pytest.approx([0.75, 0.0, 0.25])
    assert selection.description == 'multi_style: warm 0.75 + inverse 0.25'
    assert catalog.resolve('', blend_styles=['cool', 'warm']).weights == pytest.approx([0.5, 0.5, 0])


def test_blend_styles_not_in_one_model_lists_models(catalog):
    with pytest.raises(SelectionError, match=r'multi_style \(warm, cool, inverse\)'):
        catalog.resolve('', blend_styles=['warm', 'starry_night'], blend_weights=[1, 1])


@pytest.mark.parametrize('weights', [[1, -1], [float('nan'), 1], [0, 0], [float('inf'), 1], [1]])
def test_bad_blend_weights_raise(catalog, weights):
    with pytest.raises(SelectionError):
        catalog.resolve('', blend_styles=['warm', 'cool'], blend_weights=weights)


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
