"""The model contract: a TFLite file `foo.tflite` and its JSON sidecar `foo.json`.

The one definition of the sidecar format and its validation, shared by the node's catalog
(which reads sidecars) and the training converter (which writes them), so the converter
cannot write a sidecar the node refuses. Python 3.6 and the standard library only: the node
runs on the Jetson Nano's Python 3.6, and training/ imports this module (and of the rest of the
ROS package only model_runtime.py).
"""
import json
import os
import re

FORMAT_VERSION = 1
NAME_PATTERN = re.compile(r'^[a-z0-9_]+$')
TARGETS = ('current', 'nano')
QUANTIZATIONS = ('none', 'dynamic', 'float16', 'int8')
ARCHITECTURES = ('fritz', 'fritz_small', 'efficient')
# Key -> JSON type. Other keys (styles, op_versions, training_command, ...) are free-form.
REQUIRED_KEYS = (
    ('format_version', int), ('name', str), ('description', str), ('painting', str),
    ('artist', str), ('licence', str), ('training_size', list), ('quantization', str),
    ('architecture', str), ('alpha', (int, float)))
OPTIONAL_KEYS = (('target', str), ('style_names', list), ('verified_runtimes', list))
# A TFLite model is a FlatBuffer whose file identifier (bytes 4..8) is this.
TFLITE_IDENTIFIER = b'TFL3'


def _is_name(value):
    return isinstance(value, str) and NAME_PATTERN.match(value) is not None


def _is_size(values):
    return len(values) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _are_style_names(values):
    return (len(values) >= 2 and all(_is_name(v) for v in values)
            and len(set(values)) == len(values))


# Key -> (test of a value of the right type, what the value must be).
RULES = {
    'format_version': (lambda v: v == FORMAT_VERSION, 'must be {}'.format(FORMAT_VERSION)),
    'name': (_is_name, 'is not [a-z0-9_]+'),
    'training_size': (_is_size, 'is not [height, width] in pixels'),
    'quantization': (lambda v: v in QUANTIZATIONS, 'is not one of ' + ', '.join(QUANTIZATIONS)),
    'architecture': (lambda v: v in ARCHITECTURES, 'is not one of ' + ', '.join(ARCHITECTURES)),
    'alpha': (lambda v: 0 < v <= 4, 'is not in (0, 4]'),
    'target': (lambda v: v in TARGETS, 'is not one of ' + ', '.join(TARGETS)),
    'style_names': (_are_style_names, 'must be at least two unique [a-z0-9_]+ names'),
    'verified_runtimes': (lambda v: all(isinstance(r, str) for r in v),
                          'must be a list of strings'),
}


def sidecar_problems(metadata):
    """Every way `metadata` breaks the contract, as short sentences; empty when it is valid."""
    if not isinstance(metadata, dict):
        return ['not a JSON object']
    problems = []
    required = dict(REQUIRED_KEYS)
    for key, kind in REQUIRED_KEYS + OPTIONAL_KEYS:
        if key not in metadata:
            if key in required:
                problems.append('missing "{}"'.format(key))
            continue
        value = metadata[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            problems.append('"{}" has type {}'.format(key, type(value).__name__))
        elif key in RULES and not RULES[key][0](value):
            problems.append('{} {!r} {}'.format(key, value, RULES[key][1]))
    return problems


def validate_sidecar(metadata):
    """Raise ValueError listing every problem of `metadata` (see sidecar_problems)."""
    problems = sidecar_problems(metadata)
    if problems:
        raise ValueError('invalid sidecar: ' + '; '.join(problems))


def sidecar_path(model_path):
    return os.path.splitext(model_path)[0] + '.json'


def read_sidecar(path):
    """The validated sidecar at path; ValueError says why it cannot be used."""
    name = os.path.basename(path)
    try:
        with open(path, encoding='utf-8') as sidecar_file:
            metadata = json.load(sidecar_file)
    except FileNotFoundError:
        raise ValueError('no sidecar {}'.format(name))
    except (OSError, ValueError) as error:
        raise ValueError('unreadable sidecar {}: {}'.format(name, error))
    validate_sidecar(metadata)
    return metadata


def write_sidecar(path, metadata):
    """Validate, then write pretty JSON (diffs of checked-in sidecars stay readable)."""
    validate_sidecar(metadata)
    with open(path, 'w', encoding='utf-8') as sidecar_file:
        json.dump(metadata, sidecar_file, indent=2, ensure_ascii=False)
        sidecar_file.write('\n')


def model_content_problem(content):
    """Why these bytes are no TFLite model, or None (the FlatBuffer identifier only)."""
    if len(content) < 9 or content[4:8] != TFLITE_IDENTIFIER:  # a model outgrows its header
        return 'not a TFLite model (no {} identifier at bytes 4..8)'.format(
            TFLITE_IDENTIFIER.decode())
    return None


def model_file_problem(model_path):
    """Why model_path is no TFLite model, or None: so a corrupt file is caught when the
    catalog is scanned, without a TFLite runtime."""
    try:
        with open(model_path, 'rb') as model_file:
            header = model_file.read(9)
    except OSError as error:
        return 'unreadable model file: {}'.format(error)
    return model_content_problem(header)
