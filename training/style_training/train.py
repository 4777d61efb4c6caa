"""Train a fast style transfer network (Johnson et al.) on content images.

Modes: one style; several styles mixed into one (`--mode mix`: the target Grams are the weighted
mean); or one conditional network for several styles (`--mode conditional`: per-style instance
norm parameters, chosen at run time by a `style_weights` input). With `--teacher` the network
learns to copy a trained network's output instead (distillation), optionally plus the perceptual
losses. Writes <output-dir>/model.keras and <output-dir>/training.json for style-convert.
`--mixed-precision` computes in float16 where it helps (GPUs); `--distribute mirrored` splits
each batch over several GPUs.
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
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from . import checkpoints, data, loss_network, network
from .images import save_image

DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 2.0
DEFAULT_TV_WEIGHT = 0.0
MAX_SHIFT = 4  # pixels of simulated camera motion in the stability loss
SENSOR_NOISE = 2.0  # its sensor noise, in 0..255 units
STABILITY_MARGIN = 8  # border pixels the stability loss ignores (they see different padding)


class Trainer:
    """The student network, its losses and optimizer; `train_step` is one compiled update.

    style_grams: per VGG style layer an [N, C, C] tensor (one Gram per style image), or None.
    style_loss_scale: [N] per-style multipliers of the style loss (conditional mode; an image's
    multiplier is its style_weights @ style_loss_scale, 1 for normalized mix weights).
    mix_weights: [N] blend of the style targets for a single-style network (mix mode), or None
    for a conditional network, which trains on a random style (or blend) per image.
    mixed_precision: wrap Adam in a LossScaleOptimizer (small float16 gradients underflow).
    Built inside a tf.distribute strategy's scope, the trainer runs its steps on every replica.
    """

    def __init__(self, model, learning_rate, content_weight=0.0, style_weight=0.0, tv_weight=0.0,
                 stability_weight=0.0, halo_weight=0.0, halo_chroma=False,
                 style_distance='squared', vgg=None, style_grams=None, style_loss_scale=None,
                 mix_weights=None, teacher=None, distill_loss='l1', blend_probability=0.0,
                 seed=0, mixed_precision=False):
        self.model, self.vgg, self.teacher = model, vgg, teacher
        self.content_weight, self.style_weight, self.tv_weight = (
            content_weight, style_weight, tv_weight)
        self.stability_weight, self.halo_weight = stability_weight, halo_weight
        self.halo_chroma = halo_chroma
        self.style_distance = style_distance
        self.style_grams = style_grams
        self.num_styles = network.style_count(model)
        count = 1 if style_grams is None else int(style_grams[0].shape[0])
        self.style_loss_scale = tf.constant(
            np.ones(count) if style_loss_scale is None else style_loss_scale, tf.float32)
        self.mix_weights = None if mix_weights is None else tf.constant(mix_weights, tf.float32)
        self.distill_loss = distill_loss
        self.blend_probability = blend_probability
        self.strategy = tf.distribute.get_strategy()
        # In a strategy's scope every replica draws its own stream from this generator.
        self.generator = tf.random.Generator.from_seed(seed)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
        adam = keras.optimizers.Adam(learning_rate)
        self.optimizer = (keras.mixed_precision.LossScaleOptimizer(adam) if mixed_precision
                          else adam)
        self.optimizer.build(model.trainable_variables)
        # Adam's state has the same key with and without the loss scale, so a mixed precision
        # checkpoint also resumes in float32.
        self.checkpoint = tf.train.Checkpoint(step=self.step, model=model, optimizer=adam,
                                              **({'loss_scale': self.optimizer}
                                                 if mixed_precision else {}))

    def sample_style_weights(self, batch_size):
        """[B, N]: a random one-hot per image, or with blend_probability a random blend."""
        if self.mix_weights is not None or self.num_styles == 1:
            weights = self.mix_weights if self.mix_weights is not None else tf.ones([1])
            return tf.tile(weights[None], [batch_size, 1])
        styles = self.generator.uniform([batch_size], 0, self.num_styles, tf.int32)
        one_hot = tf.one_hot(styles, self.num_styles)
        blend = self.generator.uniform([batch_size, self.num_styles])
        blend /= tf.reduce_sum(blend, axis=1, keepdims=True)
        use_blend = self.generator.uniform([batch_size, 1]) < self.blend_probability
        return tf.where(use_blend, blend, one_hot)

    def losses(self, content, style_weights):
        """Dict of per-batch mean losses, weighted, plus their sum 'total'."""
        stylized = stylize(self.model, content, style_weights)
        losses = {}
        if self.vgg is not None:
            features = vgg_features(self.vgg, tf.concat([stylized, content], axis=0))
            batch = tf.shape(content)[0]
            stylized_features = [f[:batch] for f in features]
            content_index = loss_network.STYLE_LAYERS.index(loss_network.CONTENT_LAYER)
            if self.content_weight:
                losses['content'] = self.content_weight * tf.reduce_mean(
                    loss_network.content_loss(stylized_features[content_index],
                                              features[content_index][batch:]))
            if self.style_weight:
                targets = loss_network.blended_grams(self.style_grams, style_weights)
                scale = tf.linalg.matvec(style_weights, self.style_loss_scale)
                losses['style'] = self.style_weight * tf.reduce_mean(
                    scale * loss_network.style_loss(stylized_features, targets,
                                                    self.style_distance))
        if self.tv_weight:
            losses['tv'] = self.tv_weight * tf.reduce_mean(
                loss_network.total_variation_loss(stylized))
        if self.halo_weight:
            losses['halo'] = self.halo_weight * tf.reduce_mean(
                loss_network.halo_loss(stylized, content, chroma=self.halo_chroma))
        if self.stability_weight:
            losses['stability'] = self.stability_weight * tf.reduce_mean(
                self.stability_loss(content, style_weights, stylized))
        if self.teacher is not None:
            difference = (stylized - stylize(self.teacher, content, style_weights)) / 255.0
            pixel = tf.abs(difference) if self.distill_loss == 'l1' else tf.square(difference)
            losses['distill'] = tf.reduce_mean(pixel)
        losses['total'] = tf.add_n(list(losses.values()))
        return losses

    def stability_loss(self, content, style_weights, stylized):
        """Per image mean |f(moved view) - the same pixels of f(content)| / 255: a view shifted
        by 0..MAX_SHIFT pixels with sensor noise, as a camera sees after a small motion, should
        give the same output pixels, not new texture (flicker). Borders are left out."""
        size = tf.shape(content)[1:3] - MAX_SHIFT
        offset = self.generator.uniform([2], 0, MAX_SHIFT + 1, tf.int32)
        moved = tf.slice(content, [0, offset[0], offset[1], 0], [-1, size[0], size[1], -1])
        moved += self.generator.normal(tf.shape(moved), stddev=SENSOR_NOISE)
        expected = tf.slice(stylized, [0, offset[0], offset[1], 0], [-1, size[0], size[1], -1])
        margin = STABILITY_MARGIN
        difference = (stylize(self.model, moved, style_weights) - expected)[
            :, margin:-margin, margin:-margin] / 255.0
        return tf.reduce_mean(tf.abs(difference), axis=[1, 2, 3])

    @tf.function
    def train_step(self, content):
        """One update on a global batch (split over the replicas under a strategy: a
        distributed dataset's element); returns the global batch's mean losses."""
        losses = self.strategy.run(self.replica_step, args=(content,))
        self.step.assign_add(1)
        return {name: self.strategy.reduce('SUM', value, axis=None)
                for name, value in losses.items()}

    def replica_step(self, content):
        """A replica's share of the update. The optimizer sums the replicas' gradients, so
        each replica's mean losses count 1 / replicas: the update of the global-batch mean."""
        style_weights = self.sample_style_weights(tf.shape(content)[0])
        with tf.GradientTape() as tape:
            losses = {name: value / self.strategy.num_replicas_in_sync
                      for name, value in self.losses(content, style_weights).items()}
            scaled = self.optimizer.scale_loss(losses['total'])  # x the loss scale, if any
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer):
            gradients = share_overflow(gradients)
        self.optimizer.apply(gradients, variables)
        return losses


def share_overflow(gradients):
    """In a replica step: the gradients, all NaN if any replica's are not finite. Keras'
    LossScaleOptimizer skips a step (and lowers the scale) by the first replica's gradients
    alone, as if they were already summed; an overflow on another replica only would put inf
    into the weights."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    overflows = tf.distribute.get_replica_context().all_reduce(
        'SUM', tf.cast(tf.logical_not(finite), tf.float32))
    return [tf.where(overflows > 0, tf.constant(np.nan, g.dtype), g) for g in gradients]


def stylize(net, content, style_weights):
    """Run a network; style_weights [B, N] only go to conditional ones. The output is float32
    (a mixed precision network's is float16), as the losses need."""
    content = tf.convert_to_tensor(content, tf.float32)
    return tf.cast(net([content, style_weights] if len(net.inputs) > 1 else content),
                   tf.float32)


def vgg_features(vgg, images):
    """The loss network's feature maps in float32: a mixed precision VGG's float16 ones
    would overflow in the Grams and lose the small differences."""
    return [tf.cast(features, tf.float32) for features in vgg(images)]


def style_grams(vgg, styles, style_size):
    """Per style layer, the [N, C, C] stack of the style images' Gram matrices."""
    per_style = [[loss_network.gram_matrix(f)[0] for f in
                  vgg_features(vgg, data.load_style_image(path, style_size))]
                 for path, _ in styles]
    return [tf.stack(layer) for layer in zip(*per_style)]


def write_preview(path, trainer, image):
    """content | stylized (one column per style for a conditional network) as a PNG."""
    columns = [image[0]]
    for index in range(trainer.num_styles):
        weights = tf.one_hot([index], trainer.num_styles)
        columns.append(stylize(trainer.model, image, weights)[0].numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, np.concatenate(columns, axis=1))


def write_scalar(tag, value):
    """tf.summary.scalar without needing the tensorboard package installed to write."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='scalars'))
    tf.summary.write(tag, tf.cast(value, tf.float32), metadata=metadata.SerializeToString())


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
    parser.add_argument('--head', choices=network.HEADS,
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
                        help="'hed' (bundled, offline), 'imagenet' (downloads) or a file path")
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
    parser.add_argument('--checkpoint-dir', help='save here and resume from the latest')
    parser.add_argument('--checkpoint-every', type=int, default=1000)
    parser.add_argument('--log-dir', help='TensorBoard scalars')
    parser.add_argument('--log-every', type=int, default=50)
    parser.add_argument('--preview-every', type=int, default=0, help='0: no previews')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--mixed-precision', action='store_true',
                        help='compute in float16 where it is safe (faster on recent GPUs; the '
                        'saved model is float32 as without it)')
    parser.add_argument('--distribute', choices=('none', 'mirrored'), default='none',
                        help='mirrored: split each batch over all GPUs (tf.distribute.'
                        'MirroredStrategy); --batch-size is the global batch')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = shlex.join(['style-train'] + (sys.argv[1:] if argv is None else list(argv)))
    train(args, command)


def train(args, command=''):
    """Run the training described by parsed arguments and save model.keras and training.json
    in the output dir; returns the Trainer."""
    keras.utils.set_random_seed(args.seed)
    strategy = distribution_strategy(args.distribute)
    replicas = strategy.num_replicas_in_sync
    print(f'--distribute {args.distribute}: {replicas} replica(s)', flush=True)
    if args.batch_size % replicas:
        raise SystemExit(f'error: --batch-size {args.batch_size} (the global batch) does not '
                         f'split evenly over {replicas} replicas')
    if args.mixed_precision and not tf.config.list_physical_devices('GPU'):
        print('warning: --mixed-precision without a GPU: it works, but float16 is slow on CPUs',
              file=sys.stderr, flush=True)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with dtype_policy('mixed_float16' if args.mixed_precision else 'float32'), strategy.scope():
        trainer, settings = build_trainer(args)
    fit(trainer, args, output_dir)
    (float32_copy(trainer.model) if args.mixed_precision else trainer.model).save(
        output_dir / 'model.keras')
    settings['command'] = command
    (output_dir / 'training.json').write_text(json.dumps(settings, indent=2) + '\n')
    print(f'wrote {output_dir / "model.keras"} and training.json', flush=True)
    return trainer


def distribution_strategy(name):
    """The tf.distribute strategy of --distribute: 'mirrored' copies the networks to every GPU
    (without GPUs, to every logical CPU device, as the tests configure two) and splits each
    batch between them; 'none' is TensorFlow's default, one device."""
    if name == 'none':
        return tf.distribute.get_strategy()
    devices = tf.config.list_logical_devices('GPU') or tf.config.list_logical_devices('CPU')
    return tf.distribute.MirroredStrategy([device.name for device in devices])


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


def build_trainer(args):
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
    if args.fine_tune_style and not args.fine_tune_checkpoint:
        raise SystemExit('error: --fine-tune-style needs --fine-tune-checkpoint')
    conditional = args.mode == 'conditional' and len(styles) > 1
    num_styles = len(styles) if conditional else 1

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
    given = {name: value for name, value in (
        ('head', args.head), ('padding', args.padding), ('blocks', args.blocks),
        ('quarter_channels', args.quarter_channels)) if value is not None}  # unset: keep
    try:
        options = network.network_options(architecture, **{
            **(fine_tune.options if fine_tune else {}), **given})
    except ValueError as error:
        raise SystemExit(f'error: {error}')
    model = network.build_transformer(architecture, alpha, num_styles, **options)
    if fine_tune is not None:
        known = fine_tune.styles if network.style_count(fine_tune.model) > 1 else []
        if conditional and known and names[:len(known)] != known:
            raise SystemExit(f'error: the fine-tune checkpoint\'s styles ({", ".join(known)}) '
                             'must come first in --style, in that order (styles after them '
                             'are added)')
        checkpoints.copy_weights(fine_tune.model, model)

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
        seed=args.seed, mixed_precision=args.mixed_precision)
    settings = {
        'styles': [{'name': name, 'path': str(path), 'weight': float(weight)}
                   for name, (path, weight) in zip(names, styles)],
        'mode': 'conditional' if conditional else 'mix',
        'architecture': architecture, 'alpha': alpha, 'network_options': options,
        'num_styles': num_styles,
        'image_size': [args.image_size, args.image_size],
        'teacher': args.teacher, 'fine_tune_checkpoint': args.fine_tune_checkpoint,
        'fine_tune_style': args.fine_tune_style,
        'vgg_weights': args.vgg_weights if vgg is not None else None,
        'content_weight': content_weight, 'style_weight': style_weight,
        'style_distance': args.style_distance,
        'tv_weight': args.tv_weight, 'stability_weight': args.stability_weight,
        'halo_weight': args.halo_weight, 'halo_chroma': args.halo_chroma,
        'batch_size': args.batch_size, 'steps': args.steps,
        'learning_rate': args.learning_rate, 'seed': args.seed,
        'mixed_precision': args.mixed_precision, 'distribute': args.distribute,
    }
    return trainer, settings


def fit(trainer, args, output_dir):
    """The loop: resume from the latest checkpoint, step to args.steps, and log, checkpoint
    and write previews on the way."""
    manager = None
    if args.checkpoint_dir:
        manager = tf.train.CheckpointManager(trainer.checkpoint, args.checkpoint_dir,
                                             max_to_keep=3)
        if manager.latest_checkpoint:
            trainer.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    step = int(trainer.step.numpy())  # numpy(): int() does not take a MirroredVariable
    if manager and manager.latest_checkpoint:
        print(f'resumed from {manager.latest_checkpoint} at step {step}', flush=True)
    # Resuming continues the data stream from a fresh seed instead of repeating early batches.
    # Batches are global; a strategy hands each replica its share.
    batches = iter(trainer.strategy.experimental_distribute_dataset(data.content_dataset(
        args.content, args.image_size, args.batch_size, seed=args.seed + step)))
    preview = (data.first_content_image(args.content, args.image_size)
               if args.preview_every else None)
    writer = tf.summary.create_file_writer(args.log_dir) if args.log_dir else None
    print(f'training {trainer.model.name}: {trainer.num_styles} style input(s), '
          f'{trainer.model.count_params():,} parameters, steps {step}..{args.steps}', flush=True)
    started, images_done = time.perf_counter(), 0
    while step < args.steps:
        losses = trainer.train_step(next(batches))
        step = int(trainer.step.numpy())
        images_done += args.batch_size
        if step % args.log_every == 0 or step == args.steps:
            rate = images_done / (time.perf_counter() - started)
            values = '  '.join(f'{name} {float(value):.4g}' for name, value in losses.items())
            print(f'step {step}/{args.steps}  {values}  {rate:.2f} images/s', flush=True)
            if writer:
                with writer.as_default(step=step):
                    for name, value in losses.items():
                        write_scalar(f'loss/{name}', value)
                    write_scalar('images_per_second', rate)
        if manager and (step % args.checkpoint_every == 0 or step == args.steps):
            manager.save(checkpoint_number=step)
        if args.preview_every and step % args.preview_every == 0:
            write_preview(output_dir / 'previews' / f'step_{step:07d}.png', trainer, preview)


if __name__ == '__main__':
    main()
