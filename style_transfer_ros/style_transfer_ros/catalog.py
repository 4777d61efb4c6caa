"""The style catalog: models found in the model directories, and style selection.

A model `foo.tflite` is listed when a sidecar `foo.json` describes it and the file is a
TFLite model (see model_contract). Plain Python, no ROS and no TFLite.
"""
import collections
import glob
import os

import numpy as np

from style_transfer_ros.error_text import clip
from style_transfer_ros.model_contract import (model_file_problem, read_sidecar,
                                               sidecar_path)
from style_transfer_ros.stylizer import FILE_MISSING, MAX_MODEL_BYTES, regular_file_problem

MAX_SIDECAR_BYTES = 2 ** 20


def looks_like_path(style):
    """True for requests that can only mean a file (no catalog name has '.', '/' or '~')."""
    return style.startswith(('.', '~', os.sep)) or style.endswith('.tflite')


class SelectionError(ValueError):
    """A style request that does not name a usable model; the message says why."""


def normalized_weights(weights, count):
    """The one rule for style weights: `count` finite, non-negative numbers, not all zero,
    scaled to sum to 1; no weights at all means every style equally. Returns floats; raises
    ValueError with the reason."""
    if len(weights) == 0:
        weights = [1.0] * count
    try:
        values = np.asarray(weights, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError('style weights must be numbers, got {}'.format(clip(weights)))
    if values.size != count:
        raise ValueError('expected {} style weights, got {}'.format(count, values.size))
    if not np.all(np.isfinite(values)):
        raise ValueError('style weights must be finite, got {}'.format(clip(values.tolist())))
    if np.any(values < 0):
        raise ValueError('style weights must not be negative, got {}'.format(
            clip(values.tolist())))
    total = values.sum()
    if total <= 0:
        raise ValueError('style weights must not all be zero')
    return [float(w) for w in values / total]


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

    def weights_for(self, num_styles):
        """The weights to run the loaded model with (num_styles from the model itself; 0 for
        a single-style model): the selection's, or equal ones for a multi-style file chosen
        by path, whose styles no sidecar names. Raises SelectionError when they do not fit."""
        if num_styles == 0:
            if self.weights:
                raise SelectionError('{} is a single-style model: blend weights do not '
                                     'apply'.format(self.description))
            return None
        if self.weights is not None and len(self.weights) == num_styles:
            return self.weights
        if self.weights is not None:
            raise SelectionError('{} has {} styles, its sidecar names {}'.format(
                clip(self.model_path), num_styles, len(self.weights)))
        return normalized_weights([], num_styles)

    @property
    def description(self):
        if self.entry is None:
            return self.model_path
        if self.weights is None:
            return self.entry.label
        parts = ['{} {:.2f}'.format(name, weight)
                 for name, weight in zip(self.entry.style_names, self.weights) if weight > 0]
        return '{}: {}'.format(self.entry.name, ' + '.join(parts))


class Catalog(object):
    """Usable models found in model_dirs (not recursive), in directory order.

    A file without a valid sidecar, or that is no TFLite model, is skipped with a line in
    `problems`. When two files share a name with different sidecar targets ('current',
    'nano'), the one for `target` (see model_runtime.runtime_target) is listed.
    """

    def __init__(self, model_dirs, target='current'):
        self.model_dirs = [os.path.realpath(d) for d in model_dirs]
        self.target = target
        self.entries = collections.OrderedDict()
        self.problems = []
        self._skipped = {}  # name -> why its model file was skipped, to answer requests for it
        for directory in self.model_dirs:
            if not os.path.isdir(directory):
                self.problems.append('model directory {} does not exist'.format(directory))
                continue
            for model_path in sorted(glob.glob(os.path.join(directory, '*.tflite'))):
                self._scan(model_path, target)

    def rescanned(self, keep=None):
        """A fresh scan of the same directories (models added since are listed, removed ones
        not); `keep`, the name of an entry being painted, stays listed from this scan when
        its file is now skipped, so the running selection still resolves."""
        fresh = Catalog(self.model_dirs, self.target)
        if keep in self.entries and keep not in fresh.entries:
            fresh.entries[keep] = self.entries[keep]
            fresh.problems.append('{} kept from the previous scan: it is being painted'.format(
                keep))
        return fresh

    def _scan(self, model_path, target):
        stem = os.path.splitext(os.path.basename(model_path))[0]
        try:
            metadata = self._read_sidecar(sidecar_path(model_path))
        except ValueError as error:
            self._skip(stem, '{}: {}'.format(model_path, error))
            return
        problem = (regular_file_problem(model_path, MAX_MODEL_BYTES)
                   or model_file_problem(model_path))
        if problem:
            self._skip(metadata['name'], '{}: {}'.format(model_path, problem))
            return
        entry = StyleEntry(metadata['name'], model_path, metadata)
        existing = self.entries.get(entry.name)
        if existing is None or (existing.target != entry.target and entry.target == target):
            self.entries[entry.name] = entry
        elif existing.target == entry.target:
            self.problems.append('{}: name {!r} is already used by {}; skipped'.format(
                entry.model_path, entry.name, existing.model_path))

    @staticmethod
    def _read_sidecar(path):
        """read_sidecar, for regular files only (a FIFO would block the scan)."""
        problem = regular_file_problem(path, MAX_SIDECAR_BYTES)
        name = os.path.basename(path)
        if problem == FILE_MISSING:
            raise ValueError('no sidecar {}'.format(name))
        if problem:
            raise ValueError('sidecar {} {}'.format(name, problem))
        return read_sidecar(path)

    def _skip(self, name, reason):
        """A model file that is not listed: a problem, and the answer to requests for name
        (its sidecar's name, or the file's when the sidecar is unusable)."""
        self._skipped.setdefault(name, reason)
        self.problems.append(reason + '; skipped')

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
        empty) naming styles of one multi-style model. Anything that looks
        like a path is treated as one.
        """
        style = style or ''  # names are exact: 'starry_night\n' is no style
        blend_styles = list(blend_styles)
        blend_weights = list(blend_weights)
        if looks_like_path(style):
            return self._resolve_path(style, blend_weights, allow_model_paths)
        if '/' in style:
            model_name, style_name = style.split('/', 1)
            entry = self._entry(model_name)
            if blend_styles or blend_weights:
                raise SelectionError('"{}" names one style; give no blend styles or '
                                     'weights'.format(clip(style)))
            return self._blend(entry, [style_name], [1.0])
        if style:
            entry = self._entry(style)
            if not entry.style_names:
                if blend_styles or blend_weights:
                    raise SelectionError(
                        '{} is a single-style model; it cannot blend'.format(style))
                return StyleSelection(entry.model_path, entry)
            if blend_styles:
                return self._blend(entry, blend_styles, blend_weights)
            return self._blend(entry, entry.style_names, blend_weights)
        if not blend_styles:
            raise SelectionError(
                'no style given; available: {}'.format(', '.join(self.available())))
        for entry in self.entries.values():
            if set(blend_styles) <= set(entry.style_names):
                return self._blend(entry, blend_styles, blend_weights)
        raise SelectionError('no single model holds all of {}; multi-style models: {}'.format(
            clip(', '.join(blend_styles)), '; '.join(
                '{} ({})'.format(e.name, ', '.join(e.style_names))
                for e in self.entries.values() if e.style_names) or 'none'))

    def _entry(self, name):
        entry = self.entries.get(name)
        if entry is None and name in self._skipped:
            raise SelectionError('style {!r} is not usable: {}'.format(name, self._skipped[name]))
        if entry is None:
            raise SelectionError('unknown style {!r}; available: {}'.format(
                clip(name), ', '.join(self.available()) or 'none (no models found)'))
        return entry

    def _blend(self, entry, style_names, weights):
        """Weights over all of entry's styles from weights for style_names (equal if empty)."""
        unknown = [name for name in style_names if name not in entry.style_names]
        if unknown:
            raise SelectionError('{} has no style {}; its styles: {}'.format(
                entry.name, clip(', '.join(unknown)), ', '.join(entry.style_names)))
        if len(set(style_names)) != len(style_names):
            raise SelectionError('blend_styles repeats a style: {}'.format(
                clip(', '.join(style_names))))
        if weights and len(weights) != len(style_names):
            raise SelectionError('got {} blend_weights for {} styles ({})'.format(
                len(weights), len(style_names), ', '.join(style_names)))
        try:
            normalized = normalized_weights(weights, len(style_names))
        except ValueError as error:
            raise SelectionError('{}: {}'.format(entry.name, error))
        full = [0.0] * len(entry.style_names)
        for name, weight in zip(style_names, normalized):
            full[entry.style_names.index(name)] = weight
        return StyleSelection(entry.model_path, entry, full)

    def _resolve_path(self, path, blend_weights, allow_model_paths):
        """A model file inside the model directories; relative paths are looked up there."""
        if not allow_model_paths:
            raise SelectionError(
                'model paths are disabled (allow_model_paths is false): {!r}; choose a catalog '
                'style: {}'.format(clip(path), ', '.join(self.available())))
        path = os.path.expanduser(path)
        candidates = [path] if os.path.isabs(path) else [
            os.path.join(directory, path) for directory in self.model_dirs] or [path]
        # realpath first, so neither symlinks nor '..' can leave the directories.
        real_paths = [os.path.realpath(candidate) for candidate in candidates]
        inside = [p for p in real_paths
                  if any(os.path.commonpath([p, d]) == d for d in self.model_dirs)]
        if not inside:
            raise SelectionError('{} resolves to {}, outside the model directories {}'.format(
                clip(path), clip(real_paths[0]), ', '.join(self.model_dirs) or '(none)'))
        if not path.endswith('.tflite'):
            raise SelectionError('{} is not a .tflite model file'.format(clip(path)))
        existing = [p for p in inside if os.path.exists(p)]
        if not existing:
            raise SelectionError('model file {} does not exist in the model directories'.format(
                clip(path)))
        real_path = existing[0]
        problem = regular_file_problem(real_path, MAX_MODEL_BYTES)
        if problem:
            raise SelectionError('{}: {}'.format(clip(path), problem))
        for entry in self.entries.values():
            if os.path.realpath(entry.model_path) == real_path:
                if entry.style_names:
                    return self._blend(entry, entry.style_names, blend_weights)
                return StyleSelection(entry.model_path, entry)
        problem = model_file_problem(real_path)
        if problem:
            raise SelectionError('{}: {}'.format(clip(path), problem))
        if blend_weights:
            raise SelectionError('{} has no sidecar, so it is single-style and cannot '
                                 'blend'.format(clip(path)))
        return StyleSelection(real_path)
