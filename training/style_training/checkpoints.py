"""Trained networks on disk: loading them, taking one style out of a conditional one, and
carrying weights into a new network (also from the first efficient layout, and from the
shipped head into a new one).

A checkpoint is our .keras file (or a training output directory with model.keras and the
training.json that train.py writes beside it) or a Fritz Keras 2 .h5. A training state (what
--checkpoint-dir holds to resume) is ckpt-N.weights.h5 (the network's Keras weights) plus
ckpt-N.optimizer.npz (Adam's variables, the loss scale's, and the step N): any backend writes
and reads them.
"""
import json
import re
from pathlib import Path

import h5py
import keras
import numpy as np
from keras import layers

from . import network


class Checkpoint:
    """A trained network and what its training run says about it: style names (in
    style_weights order), architecture, alpha, training size [height, width], command and the
    network's options (network.EFFICIENT_OPTIONS; empty for the shipped layout)."""

    def __init__(self, model, styles, architecture, alpha, training_size, command=None,
                 options=None):
        self.model, self.styles, self.command = model, styles, command
        self.architecture, self.alpha, self.training_size = architecture, alpha, training_size
        self.options = options or {}

    def select_style(self, style):
        """The single-style checkpoint of one style of this conditional one: the same weights
        with that style's instance-norm parameters (the one-hot blend); smaller and faster
        than the conditional network with fixed weights."""
        count = network.style_count(self.model)
        if count == 1 or len(self.styles) != count or style not in self.styles:
            raise ValueError(f'no style {style!r} to take out of this network ({count} style '
                             f'input(s); style names: {", ".join(self.styles)})')
        index = self.styles.index(style)
        single = network.build_transformer(self.architecture, self.alpha, **self.options)
        single.set_weights([w[index:index + 1] if w.ndim == 2 and w.shape[0] == count else w
                            for w in self.model.get_weights()])
        return Checkpoint(single, [style], self.architecture, self.alpha, self.training_size,
                          self.command, self.options)


def load(path, styles=None, architecture=None, alpha=None, training_size=None):
    """The checkpoint at path. Values given here win over training.json (or, for a Fritz .h5,
    over the file itself), then come the file name (*_256x256_*: training size; its stem:
    the style) and the defaults: efficient, alpha 0.25, 256x256. The network's options come
    from training.json only (network_options)."""
    path = Path(path)
    if path.suffix == '.h5':
        found_architecture, found_alpha = fritz_h5_architecture(path)
        model = load_fritz_h5(path)
        training = {'architecture': found_architecture, 'alpha': found_alpha}
    else:
        model_path = path / 'model.keras' if path.is_dir() else path
        model = keras.saving.load_model(str(model_path), compile=False)
        settings = model_path.parent / 'training.json'
        training = json.loads(settings.read_text()) if settings.exists() else {}
    stem = path.stem if path.suffix else path.name
    styles = styles or [
        style.get('name') or Path(style['path']).stem if isinstance(style, dict) else str(style)
        for style in training.get('styles', [])] or [stem]
    size = training_size or training.get('image_size') or training.get('size')
    if size is None:
        match = re.search(r'(\d+)x(\d+)', stem)
        size = [int(match[2]), int(match[1])] if match else [256, 256]
    if isinstance(size, int):
        size = [size, size]
    return Checkpoint(model, list(styles), architecture or training.get('architecture') or
                      'efficient', float(alpha or training.get('alpha') or 0.25), size,
                      training.get('command'), training.get('network_options'))


STATE_PATTERN = re.compile(r'^ckpt-(\d+)\.optimizer\.npz$')


def save_training_state(folder, step, model, optimizer, keep=3):
    """Write ckpt-<step>.weights.h5 and ckpt-<step>.optimizer.npz into folder (the weights
    first: a state counts once its optimizer file exists) and delete all but the `keep`
    latest states."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / f'ckpt-{step}.weights.h5')
    inner = getattr(optimizer, 'inner_optimizer', optimizer)
    own = [v for v in optimizer.variables if all(v is not w for w in inner.variables)]
    arrays = {'step': np.array(step, np.int64)}
    arrays.update({f'adam/{index}': keras.ops.convert_to_numpy(v)
                   for index, v in enumerate(inner.variables)})
    arrays.update({f'loss_scale/{index}': keras.ops.convert_to_numpy(v)
                   for index, v in enumerate(own)})
    partial = folder / f'ckpt-{step}.partial.npz'
    np.savez(partial, **arrays)
    partial.replace(folder / f'ckpt-{step}.optimizer.npz')
    for old in _training_states(folder)[:-keep]:
        for path in (old, old.with_name(old.name.replace('.optimizer.npz', '.weights.h5'))):
            path.unlink(missing_ok=True)


def _training_states(folder):
    """The optimizer files of folder's training states, oldest first."""
    found = [(int(match[1]), path) for path in Path(folder).glob('ckpt-*.optimizer.npz')
             if (match := STATE_PATTERN.match(path.name))]
    return [path for _, path in sorted(found)]


def latest_training_state(folder):
    """The latest ckpt-N.optimizer.npz of folder, or None (no folder, or no state yet)."""
    states = _training_states(folder) if folder and Path(folder).is_dir() else []
    return states[-1] if states else None


def restore_training_state(state, model, optimizer):
    """Load a training state (its ckpt-N.optimizer.npz path) into the network and the built
    optimizer; returns its step. A mixed precision state resumes without mixed precision
    (the loss scale is left out) and the other way round (the loss scale starts afresh)."""
    state = Path(state)
    model.load_weights(state.with_name(state.name.replace('.optimizer.npz', '.weights.h5')))
    inner = getattr(optimizer, 'inner_optimizer', optimizer)
    own = [v for v in optimizer.variables if all(v is not w for w in inner.variables)]
    with np.load(state) as saved:
        for prefix, variables in (('adam', inner.variables), ('loss_scale', own)):
            values = [saved[f'{prefix}/{index}'] for index in range(len(variables))
                      if f'{prefix}/{index}' in saved]
            if prefix == 'loss_scale' and not values:
                continue
            if [v.shape for v in values] != [tuple(v.shape) for v in variables]:
                raise ValueError(f'{state}: the optimizer state does not fit this network')
            for variable, value in zip(variables, values):
                variable.assign(value)
        return int(saved['step'])


def copy_weights(source, target):
    """Copy weights of the same architecture (or of the first efficient network, upgraded); a
    single style's instance norm parameters are repeated for every style of a conditional
    target, and a conditional source with fewer styles gives its styles to the target's first
    ones, the styles added after them starting from their mean. Head layers the source lacks
    (network.HEAD_LAYERS) keep their start, so the shipped network fine-tunes into a new head
    and starts from its own output. A paint head (Head.paints) takes the body and the
    style term of a source with another head and leaves out that head's own layers and its
    colour mix of the photo, which the paint heads do not have."""
    source_layers = getattr(source, 'layers', [])
    source_names = {layer.name for layer in source_layers}
    fresh = {id(weight) for layer in target.layers if layer.name in network.HEAD_LAYERS
             and layer.name not in source_names for weight in layer.weights}
    variables = [weight for weight in target.weights if id(weight) not in fresh]
    source_weights = source.get_weights()
    if source_layers and network.HEADS[network.head_of(target)].paints and (
            not network.HEADS[network.head_of(source)].paints):
        target_names = {layer.name for layer in target.layers}
        left_out = [network.colour_mix(source)] + [
            layer for layer in source_layers
            if layer.name in network.HEAD_LAYERS and layer.name not in target_names]
        left_out = {id(weight) for layer in left_out for weight in layer.weights}
        source_weights = [value for value, weight in zip(source_weights, source.weights)
                          if id(weight) not in left_out]
    if len(source_weights) == len(variables) + 1:
        source_weights = upgrade_efficient_v1(source_weights)
    if len(source_weights) != len(variables):
        raise ValueError('fine-tune checkpoint has a different architecture')
    copied = []
    for value, variable in zip(source_weights, variables):
        wanted = tuple(variable.shape)
        if value.shape != wanted and value.shape[0] < wanted[0] and value.shape[1:] == wanted[1:]:
            added = np.repeat(value.mean(axis=0, keepdims=True), wanted[0] - len(value), axis=0)
            value = np.concatenate([value, added])
        if value.shape != wanted:
            raise ValueError(f'fine-tune checkpoint weight {value.shape} != {wanted}')
        copied.append(value)
    for variable, value in zip(variables, copied):
        variable.assign(value)


def upgrade_efficient_v1(weights):
    """Weights of the first efficient network (tanh output, 16->8->3 output convs, image
    rescaled to -1..1 before its 1x1 conv) as weights of the current one. Kept because the
    shipped models' training stages fine-tune the current network from such a run (classics_v2
    from runs/classics). Exact except tanh, which became a clip: the two 1x1 convs compose
    into one, and the image's -1 offset moves into that conv's bias."""
    *body, narrow, to_rgb, colours_kernel, colours_bias = weights
    shapes = [narrow.shape[:2], to_rgb.shape[:2], colours_kernel.shape, colours_bias.shape]
    if shapes != [(1, 1), (1, 1), (1, 1, 3, 3), (3,)] or narrow.shape[3] != to_rgb.shape[2]:
        raise ValueError('not the weights of a first-version efficient network')
    return body + [(narrow[0, 0] @ to_rgb[0, 0])[None, None], colours_kernel,
                   colours_bias - colours_kernel[0, 0].sum(axis=0)]


def fritz_h5_architecture(path):
    """(architecture, alpha) of a Fritz Keras 2 .h5: the small variant has 12 convolutions, the
    full one 16; alpha is the smallest multiple of 0.05 giving the first conv's width."""
    with h5py.File(path, 'r') as f:
        config = json.loads(f.attrs['model_config'])
    convs = [layer['config'] for layer in config['config']['layers']
             if layer['class_name'] == 'Conv2D']
    architecture = {16: 'fritz', 12: 'fritz_small'}.get(len(convs))
    if architecture is None:
        raise ValueError(f'{path}: {len(convs)} convolutions, not a Fritz style transfer model')
    filters = convs[0]['filters']
    alpha = next((step / 20 for step in range(1, 81) if int(step / 20 * 32) == filters),
                 filters / 32)
    return architecture, alpha


def load_fritz_h5(path):
    """Our network with the weights of a Fritz style transfer .h5 (read with h5py: Keras 3
    cannot deserialize its custom layers). Layers are matched by order of creation."""
    architecture, alpha = fritz_h5_architecture(path)
    model = network.build_transformer(architecture, alpha)
    with h5py.File(path, 'r') as f:
        group = f['model_weights'] if 'model_weights' in f else f
        names = [name.decode() if isinstance(name, bytes) else name
                 for name in group.attrs['layer_names']]

        def weights_of(prefix):
            found = []
            for name in names:
                if name.startswith(prefix):
                    layer = group[name]
                    found.append({weight.decode().split('/')[-1].split(':')[0]:
                                  np.array(layer[weight])
                                  for weight in layer.attrs['weight_names']})
            return found

        convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
        norms = [layer for layer in model.layers if isinstance(layer, network.InstanceNorm)]
        fritz_convs, fritz_norms = weights_of('conv2d_'), weights_of('instance_normalization_')
        if (len(convs), len(norms)) != (len(fritz_convs), len(fritz_norms)):
            raise ValueError(f'{path}: layer counts do not match {architecture}')
        for layer, weights in zip(convs, fritz_convs):
            layer.kernel.assign(weights['kernel'])
        for layer, weights in zip(norms, fritz_norms):
            layer.gamma.assign(weights['gamma'][None])
            layer.beta.assign(weights['beta'][None])
    return model
