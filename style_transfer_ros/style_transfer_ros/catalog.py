"""The style catalog: models found in the model directories, and style selection.

A model `foo.tflite` is listed when a sidecar `foo.json` describes it (see
the metadata contract in the README). Plain Python, no ROS and no TFLite.
"""
import collections
import glob
import json
import os
import re

from style_transfer_ros.stylizer import validate_style_weights

NAME_PATTERN = re.compile(r'^[a-z0-9_]+$')
TARGETS = ('current', 'nano')


class SelectionError(ValueError):
    """A style request that does not name a usable model; the message says why."""


class StyleEntry(object):
    """One catalog model and its sidecar metadata."""

    def __init__(self, name, model_path, metadata):
        self.name = name
        self.model_path = model_path
        self.metadata = metadata
        self.description = metadata.get('description', '')
        self.painting = metadata.get('painting', '')
        self.artist = metadata.get('artist', '')
        self.licence = metadata.get('licence', '')
        self.quantization = metadata.get('quantization', '')
        self.style_names = list(metadata.get('style_names', []))
        self.target = metadata.get('target', 'current')
        self.alternatives = []  # same name, built for another runtime target

    @property
    def label(self):
        """'name (painting, artist)', leaving out what the sidecar lacks."""
        details = ', '.join(part for part in (self.painting, self.artist) if part)
        return '{} ({})'.format(self.name, details) if details else self.name


class StyleSelection(object):
    """A resolved style: the model file and, for multi-style models, its weights."""

    def __init__(self, model_path, entry=None, weights=None):
        self.model_path = model_path
        self.entry = entry
        self.weights = weights

    @property
    def description(self):
        if self.entry is None:
            return self.model_path
        if self.weights is None:
            return self.entry.label
        parts = ['{} {:.2f}'.format(name, weight)
                 for name, weight in zip(self.entry.style_names, self.weights) if weight > 0]
        return '{}: {}'.format(self.entry.name, ' + '.join(parts))


def read_sidecar(model_path):
    """Return the sidecar metadata of model_path; raise ValueError saying what is wrong."""
    sidecar_path = os.path.splitext(model_path)[0] + '.json'
    if not os.path.isfile(sidecar_path):
        raise ValueError('no sidecar {}'.format(os.path.basename(sidecar_path)))
    try:
        with open(sidecar_path) as sidecar_file:
            metadata = json.load(sidecar_file)
    except (OSError, ValueError) as error:
        raise ValueError('unreadable sidecar {}: {}'.format(os.path.basename(sidecar_path), error))
    if not isinstance(metadata, dict):
        raise ValueError('sidecar is not a JSON object')
    if metadata.get('format_version') != 1:
        raise ValueError('unsupported sidecar format_version {!r} (expected 1)'.format(
            metadata.get('format_version')))
    name = metadata.get('name')
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError('sidecar name {!r} is not [a-z0-9_]+'.format(name))
    style_names = metadata.get('style_names', [])
    if not isinstance(style_names, list) or len(set(style_names)) != len(style_names) or not all(
            isinstance(s, str) and NAME_PATTERN.match(s) for s in style_names):
        raise ValueError('style_names must be a list of unique [a-z0-9_]+ names')
    if metadata.get('target', 'current') not in TARGETS:
        raise ValueError('target must be one of {}'.format(TARGETS))
    return metadata


class Catalog(object):
    """Models with sidecars found in model_dirs (not recursive), in directory order.

    When two files share a name with different sidecar targets ('current', 'nano'), the one
    for `target` (see stylizer.runtime_target) is listed; the other is in its alternatives.
    """

    def __init__(self, model_dirs, target='current'):
        self.model_dirs = [os.path.realpath(d) for d in model_dirs]
        self.entries = collections.OrderedDict()
        self.problems = []
        for directory in self.model_dirs:
            if not os.path.isdir(directory):
                self.problems.append('model directory {} does not exist'.format(directory))
                continue
            for model_path in sorted(glob.glob(os.path.join(directory, '*.tflite'))):
                try:
                    entry = StyleEntry(None, model_path, read_sidecar(model_path))
                except ValueError as error:
                    self.problems.append('{}: {}; skipped'.format(model_path, error))
                    continue
                entry.name = entry.metadata['name']
                self._add(entry, target)

    def _add(self, entry, target):
        existing = self.entries.get(entry.name)
        if existing is None:
            self.entries[entry.name] = entry
        elif existing.target != entry.target:
            chosen, other = (entry, existing) if entry.target == target else (existing, entry)
            chosen.alternatives = existing.alternatives + [other]
            self.entries[entry.name] = chosen
        else:
            self.problems.append('{}: name {!r} is already used by {}; skipped'.format(
                entry.model_path, entry.name, existing.model_path))

    def get(self, name):
        return self.entries.get(name)

    def available(self):
        """Every selectable style string, for error messages and listings."""
        names = []
        for entry in self.entries.values():
            names.append(entry.name)
            names.extend('{}/{}'.format(entry.name, style) for style in entry.style_names)
        return names

    def resolve(self, style, blend_styles=(), blend_weights=(), allow_model_paths=False):
        """Turn a style request into a StyleSelection, or raise SelectionError.

        style: a catalog name; "model/style" (one style of a multi-style model);
        a multi-style model name (blend_weights, one per style, or equal
        weights); a .tflite path inside a model directory (only with
        allow_model_paths; relative paths are looked up in the model
        directories); or empty with blend_styles (+ blend_weights, equal if
        empty) naming styles of one multi-style model.
        """
        style = (style or '').strip()
        blend_styles = list(blend_styles)
        blend_weights = list(blend_weights)
        if style.endswith('.tflite'):
            return self._resolve_path(style, blend_weights, allow_model_paths)
        if '/' in style:
            model_name, style_name = style.split('/', 1)
            entry = self._entry(model_name)
            if blend_styles or blend_weights:
                raise SelectionError('"{}" names one style; give no blend styles or weights'.format(style))
            return self._blend(entry, [style_name], [1.0])
        if style:
            entry = self._entry(style)
            if not entry.style_names:
                if blend_styles or blend_weights:
                    raise SelectionError('{} is a single-style model; it cannot blend'.format(style))
                return StyleSelection(entry.model_path, entry)
            if blend_styles:
                return self._blend(entry, blend_styles, blend_weights)
            return self._blend(entry, entry.style_names, blend_weights)
        if not blend_styles:
            raise SelectionError('no style given; available: {}'.format(', '.join(self.available())))
        for entry in self.entries.values():
            if set(blend_styles) <= set(entry.style_names):
                return self._blend(entry, blend_styles, blend_weights)
        raise SelectionError('no single model holds all of {}; multi-style models: {}'.format(
            ', '.join(blend_styles), '; '.join(
                '{} ({})'.format(e.name, ', '.join(e.style_names))
                for e in self.entries.values() if e.style_names) or 'none'))

    def _entry(self, name):
        entry = self.entries.get(name)
        if entry is None:
            raise SelectionError('unknown style {!r}; available: {}'.format(
                name, ', '.join(self.available()) or 'none (no models found)'))
        return entry

    def _blend(self, entry, style_names, weights):
        """Weights over all of entry's styles from weights for style_names (equal if empty)."""
        unknown = [name for name in style_names if name not in entry.style_names]
        if unknown:
            raise SelectionError('{} has no style {}; its styles: {}'.format(
                entry.name, ', '.join(unknown), ', '.join(entry.style_names)))
        if len(set(style_names)) != len(style_names):
            raise SelectionError('blend_styles repeats a style: {}'.format(', '.join(style_names)))
        if weights and len(weights) != len(style_names):
            raise SelectionError('got {} blend_weights for {} styles ({})'.format(
                len(weights), len(style_names), ', '.join(style_names)))
        full = [0.0] * len(entry.style_names)
        for name, weight in zip(style_names, weights or [1.0] * len(style_names)):
            full[entry.style_names.index(name)] = weight
        try:
            normalized = validate_style_weights(full, len(full))
        except ValueError as error:
            raise SelectionError('{}: {}'.format(entry.name, error))
        return StyleSelection(entry.model_path, entry, [float(w) for w in normalized])

    def _resolve_path(self, path, blend_weights, allow_model_paths):
        if not allow_model_paths:
            raise SelectionError('model paths are not allowed (allow_model_paths is false); '
                                 'choose a catalog style: {}'.format(', '.join(self.available())))
        candidates = [path] if os.path.isabs(path) else [
            os.path.join(directory, path) for directory in self.model_dirs]
        # realpath first, so neither symlinks nor '..' can leave the directories.
        real_paths = [os.path.realpath(candidate) for candidate in candidates]
        inside = [p for p in real_paths
                  if any(os.path.commonpath([p, d]) == d for d in self.model_dirs)]
        if not inside:
            raise SelectionError('{} resolves to {}, outside the model directories {}'.format(
                path, real_paths[0], ', '.join(self.model_dirs)))
        existing = [p for p in inside if os.path.isfile(p)]
        if not existing:
            raise SelectionError('model file {} does not exist in the model directories'.format(path))
        real_path = existing[0]
        for entry in self.entries.values():
            if os.path.realpath(entry.model_path) == real_path:
                if entry.style_names:
                    return self._blend(entry, entry.style_names, blend_weights)
                return StyleSelection(entry.model_path, entry)
        if blend_weights:
            raise SelectionError('{} has no sidecar, so it is single-style and cannot blend'.format(path))
        return StyleSelection(real_path)
