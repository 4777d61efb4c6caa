"""The one sidecar contract: every shipped and fixture model meets it, and each rule bites."""
import ast
import copy
import glob
import json
import os
import sys

import pytest

from style_transfer_ros import model_contract
from style_transfer_ros.model_contract import (model_file_problem, read_sidecar,
                                               sidecar_problems, write_sidecar)

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(PACKAGE_ROOT)
SIDECARS = sorted(glob.glob(os.path.join(PACKAGE_ROOT, 'models', '*.json'))
                  + glob.glob(os.path.join(HERE, 'fixtures', '*.json')))
MODELS = sorted(glob.glob(os.path.join(PACKAGE_ROOT, 'models', '*.tflite'))
                + glob.glob(os.path.join(HERE, 'fixtures', '**', '*.tflite'), recursive=True))


def test_there_are_shipped_and_fixture_models():
    assert len([p for p in SIDECARS if '/models/' in p]) >= 5
    assert len([p for p in SIDECARS if '/fixtures/' in p]) >= 4
    assert len(MODELS) >= len(SIDECARS)


@pytest.mark.parametrize('path', SIDECARS, ids=os.path.basename)
def test_every_shipped_and_fixture_sidecar_meets_the_contract(path):
    metadata = read_sidecar(path)
    assert metadata['name'] == os.path.splitext(os.path.basename(path))[0]
    assert os.path.isfile(os.path.splitext(path)[0] + '.tflite')


@pytest.mark.parametrize('path', MODELS, ids=os.path.basename)
def test_every_shipped_and_fixture_model_is_a_tflite_file(path):
    assert model_file_problem(path) is None


@pytest.fixture
def valid():
    with open(os.path.join(HERE, 'fixtures', 'multi_style.json')) as f:
        return json.load(f)


def changed(metadata, **changes):
    """A copy of metadata with keys set, or removed where the value is the class `KeyError`."""
    result = copy.deepcopy(metadata)
    for key, value in changes.items():
        if value is KeyError:
            del result[key]
        else:
            result[key] = value
    return result


@pytest.mark.parametrize('key', [key for key, _ in model_contract.REQUIRED_KEYS])
def test_each_required_key_must_be_there(valid, key):
    assert sidecar_problems(changed(valid, **{key: KeyError})) == ['missing "{}"'.format(key)]


@pytest.mark.parametrize('changes, problem', [
    (dict(format_version=2), 'format_version 2 must be 1'),
    (dict(format_version='1'), '"format_version" has type str'),
    (dict(format_version=True), '"format_version" has type bool'),
    (dict(name='Starry Night'), "name 'Starry Night' is not [a-z0-9_]+"),
    (dict(name=7), '"name" has type int'),
    (dict(description=None), '"description" has type NoneType'),
    (dict(training_size=[256]), 'training_size [256] is not [height, width]'),
    (dict(training_size=[0, 256]), 'training_size [0, 256] is not [height, width]'),
    (dict(training_size=[256.0, 256]), 'training_size [256.0, 256] is not [height, width]'),
    (dict(training_size='256x256'), '"training_size" has type str'),
    (dict(quantization='int4'), "quantization 'int4' is not one of none, dynamic"),
    (dict(architecture='vgg'), "architecture 'vgg' is not one of fritz"),
    (dict(alpha=0), 'alpha 0 is not in (0, 4]'),
    (dict(alpha=4.5), 'alpha 4.5 is not in (0, 4]'),
    (dict(alpha=float('nan')), 'alpha nan is not in (0, 4]'),
    (dict(target='pi'), "target 'pi' is not one of current, nano"),
    (dict(style_names=['only_one']), 'style_names'),
    (dict(style_names=['warm', 'warm']), 'at least two unique'),
    (dict(style_names=['warm', 'Cool']), 'at least two unique'),
    (dict(style_names='warm,cool'), '"style_names" has type str'),
    (dict(verified_runtimes='tflite'), '"verified_runtimes" has type str'),
    (dict(verified_runtimes=[2.6]), 'verified_runtimes [2.6] must be a list of strings'),
])
def test_each_rule_rejects_a_broken_sidecar(valid, changes, problem):
    assert sidecar_problems(valid) == []
    problems = sidecar_problems(changed(valid, **changes))
    assert len(problems) == 1 and problem in problems[0], problems
    with pytest.raises(ValueError, match='invalid sidecar'):
        model_contract.validate_sidecar(changed(valid, **changes))


def test_every_problem_is_listed_at_once(valid):
    broken = changed(valid, name='A', alpha=KeyError, target='pi', style_names=['x', 'x'])
    problems = sidecar_problems(broken)
    assert len(problems) == 4, problems
    assert sidecar_problems([valid]) == ['not a JSON object']


def test_read_says_why_a_sidecar_cannot_be_used(tmp_path, valid):
    with pytest.raises(ValueError, match='no sidecar absent.json'):
        read_sidecar(str(tmp_path / 'absent.json'))
    (tmp_path / 'bad.json').write_text(u'{not json')
    with pytest.raises(ValueError, match='unreadable sidecar bad.json'):
        read_sidecar(str(tmp_path / 'bad.json'))
    os.mkdir(str(tmp_path / 'folder.json'))
    with pytest.raises(ValueError, match='unreadable sidecar folder.json'):
        read_sidecar(str(tmp_path / 'folder.json'))
    (tmp_path / 'old.json').write_text(json.dumps(changed(valid, format_version=0)))
    with pytest.raises(ValueError, match='format_version 0 must be 1'):
        read_sidecar(str(tmp_path / 'old.json'))


def test_write_refuses_what_read_would_refuse(tmp_path, valid):
    path = str(tmp_path / 'model.json')
    with pytest.raises(ValueError, match='at least two unique'):
        write_sidecar(path, changed(valid, style_names=['warm', 'warm']))
    assert not os.path.exists(path)
    write_sidecar(path, changed(valid, painting=u'Komposition \u2167'))
    assert read_sidecar(path) == changed(valid, painting=u'Komposition \u2167')


def test_model_file_problems(tmp_path):
    assert 'unreadable model file' in model_file_problem(str(tmp_path / 'absent.tflite'))
    for name, content in (('short', b'\x1c\x00\x00\x00TFL3'), ('other', b'\x00' * 64)):
        path = tmp_path / (name + '.tflite')
        path.write_bytes(content)
        assert 'not a TFLite model' in model_file_problem(str(path))
    (tmp_path / 'stub.tflite').write_bytes(b'\x1c\x00\x00\x00TFL3' + bytes(8))
    assert model_file_problem(str(tmp_path / 'stub.tflite')) is None


def imported_modules(path):
    """Names of the modules a Python file imports (absolute imports only)."""
    with open(path) as source:
        tree = ast.parse(source.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_contract_needs_only_the_standard_library():
    modules = imported_modules(model_contract.__file__)
    assert {m.split('.')[0] for m in modules} <= set(sys.stdlib_module_names), modules


def test_training_imports_no_other_module_of_the_ros_package():
    sources = glob.glob(os.path.join(REPO, 'training', '**', '*.py'), recursive=True)
    used = set()
    for path in sources:
        used.update(m for m in imported_modules(path) if m.split('.')[0] == 'style_transfer_ros')
    assert used == {'style_transfer_ros.model_contract', 'style_transfer_ros.model_runtime'}
