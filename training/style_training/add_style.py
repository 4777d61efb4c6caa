"""Add a painting to a trained conditional network as one more style, in minutes.

A style of the conditional network is one row of instance-norm scales and shifts per norm
layer (Dumoulin et al.); the rest of the network already knows how to paint. The new row
starts from the mean of the checkpoint's rows and is the only weight that trains: every other
layer is frozen, and the shipped rows get no gradient (every image is trained as the new
style, whose weight vector is one-hot), so the checkpoint's styles stay bit-identical.

Writes into --output-dir (which the node's `model_dirs` can name) <name>.tflite (the new
style alone) and <checkpoint's name>_<name>.tflite (the checkpoint's styles with the new one
appended, blendable), each float16 with its sidecar, staged in a hidden folder and renamed
into place: the node never sees a half-written model. The training state goes to --work-dir;
Ctrl-C stops with a state there (and no model file), and the same command goes on from it.
"""
import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
from style_transfer_ros.model_contract import (NAME_PATTERN, read_sidecar, sidecar_path,
                                               write_sidecar)
from style_transfer_ros.model_runtime import resize
from tqdm import tqdm

from . import checkpoints, data, loss_network, network, train
from .images import list_images, load_image, save_image

TRAINING = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = TRAINING / 'checkpoints' / 'classics_affine_v2'
DEFAULT_CONTENT = TRAINING.parents[1] / 'shared' / 'data' / 'content_train'
USER_DATA = Path('~/.local/share/style_transfer_ros').expanduser()
DEFAULT_MINUTES = 15.0  # the goal; docs/your_own_style.md: what the runs reached
PREVIEW_SIZE = (480, 640)  # height, width: the node's camera frames
INTERRUPTED = 130  # exit code after Ctrl-C, as a shell reports SIGINT


class StyleProgress(keras.callbacks.Callback):
    """After every step: the progress bar (losses, steps, time left), a 640x480 preview
    every preview_seconds, and at the deadline (time.perf_counter(): the command's
    wall-clock budget) or on Ctrl-C the stop with a training state."""

    def __init__(self, deadline, preview, preview_dir, preview_seconds, style_weights,
                 checkpoint_dir):
        super().__init__()
        self.deadline, self.preview, self.preview_dir = deadline, preview, preview_dir
        self.preview_seconds, self.style_weights = preview_seconds, style_weights
        self.checkpoint_dir = checkpoint_dir
        self.interrupted = False
        self.step = self.bar = self.started = self.last_preview = self.budget = None

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations)  # 0, or the resumed state's step
        self.started = self.last_preview = time.perf_counter()
        self.budget = max(0.0, self.deadline - self.started)
        self.bar = tqdm(total=round(self.budget), unit='s', dynamic_ncols=True,
                        bar_format='{l_bar}{bar}| {n:.0f}/{total:.0f} s, {remaining} left '
                        '{postfix}')

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        now = time.perf_counter()
        losses = {name: float(logs[name]) for name in ('style', 'content', 'total')
                  if name in logs}
        self.bar.set_postfix_str(f'step {self.step}  ' + '  '.join(
            f'{name} {value:.3g}' for name, value in losses.items()), refresh=False)
        self.bar.update(min(now - self.started, self.budget) - self.bar.n)
        trainer = self.model  # on JAX, reading it brings the variables up to date
        if now - self.last_preview >= self.preview_seconds:
            self.write_preview(trainer.model, self.step)
            self.last_preview = now
        if self.interrupted or now >= self.deadline:
            checkpoints.save_training_state(self.checkpoint_dir, self.step, trainer.model,
                                            trainer.optimizer, keep=10 ** 6)
            trainer.stop_training = True

    def on_train_end(self, logs=None):
        self.bar.close()

    def write_preview(self, model, step):
        """preview_dir/step_N.jpg and latest.jpg: the first content image at 640x480."""
        frame = keras.ops.convert_to_numpy(train.stylize(model, self.preview,
                                                         self.style_weights))[0]
        self.preview_dir.mkdir(parents=True, exist_ok=True)
        save_image(self.preview_dir / f'step_{step:06d}.jpg', frame)
        save_image(self.preview_dir / 'latest.jpg', frame)

    def stop_on_interrupt(self, signum, frame):
        """The SIGINT handler: stop after this step with a state; a second Ctrl-C stops now
        (the last periodic state stays, and a half-written state does not count)."""
        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print('\nCtrl-C: stopping after this step with a training state (again: at once)',
              file=sys.stderr, flush=True)


def build_style_trainer(source, painting, args):
    """The Trainer of source's network (a checkpoints.Checkpoint) with one style more, its
    row from the mean of source's rows, only the instance-norm tables trainable and every
    image trained as the new style; and the new style's one-hot weights [1, N + 1]."""
    count = len(source.styles)
    model = network.build_transformer(source.architecture, source.alpha, count + 1,
                                      **source.options)
    checkpoints.copy_weights(source.model, model)
    for layer in model.layers:
        layer.trainable = isinstance(layer, network.InstanceNorm)
    vgg = loss_network.build_vgg16_features(args.vgg_weights)
    grams = train.style_grams(vgg, [(str(painting), 1.0)], args.style_size)
    # The shipped styles' targets: never used, as no image has weight on them.
    targets = [np.concatenate([np.zeros((count,) + g.shape[1:], np.float32), g])
               for g in grams]
    one_hot = np.eye(count + 1, dtype=np.float32)[count]
    trainer = train.Trainer(
        model, args.learning_rate, args.content_weight, args.style_weight,
        stability_weight=args.stability_weight, halo_weight=args.halo_weight, vgg=vgg,
        style_grams=targets, mix_weights=one_hot, seed=args.seed)
    return trainer, one_hot[None]


def fit_args(args, work_dir, budget):
    """The trainer's own options for train.fit: the run's data, steps and checkpoints."""
    return train.build_parser().parse_args([
        '--content', *map(str, args.content), '--output-dir', str(work_dir),
        '--image-size', str(args.image_size), '--batch-size', str(args.batch_size),
        '--steps', str(args.steps), '--seed', str(args.seed), '--time-budget', str(budget),
        '--checkpoint-dir', str(work_dir / 'checkpoints'),
        '--checkpoint-every', str(args.checkpoint_every),
        '--keep-checkpoints', str(args.keep_checkpoints), '--log-every', str(10 ** 9)])


def save_network(trainer, source, name, painting, args, work_dir, command, steps_done):
    """work_dir/model.keras (renamed into place) and the training.json convert reads."""
    partial = work_dir / 'model.partial.keras'
    trainer.model.save(partial)
    settings = {
        'styles': [{'name': style} for style in source.styles]
        + [{'name': name, 'path': str(painting)}],
        'mode': 'conditional', 'architecture': source.architecture, 'alpha': source.alpha,
        'network_options': source.options, 'image_size': [args.image_size] * 2,
        'fine_tune_checkpoint': str(args.checkpoint), 'command': command,
        'steps_done': steps_done, 'backend': keras.backend.backend(),
        **{key: getattr(args, key) for key in (
            'learning_rate', 'style_weight', 'content_weight', 'stability_weight',
            'halo_weight', 'batch_size', 'style_size', 'seed')}}
    (work_dir / 'training.json').write_text(json.dumps(settings, indent=2) + '\n')
    partial.replace(work_dir / 'model.keras')


def export(work_dir, name, combined_name, output_dir, painting, artist, licence,
           sample_dir=None):
    """The float16 .tflite files and sidecars of the new style alone and of all styles,
    converted by style-convert (TensorFlow traces the network; with its parity check) into
    a hidden staging folder of output_dir and renamed into place, each sidecar before its
    model (the catalog lists a model only with its sidecar); returns the model paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = output_dir / f'.{name}.partial'
    shutil.rmtree(staging, ignore_errors=True)
    samples = ['--sample-dir', str(sample_dir)] if sample_dir else []
    try:
        for model_name, extra in ((name, ['--select-style', name]), (combined_name, [])):
            converted = subprocess.run([
                sys.executable, '-m', 'style_training.convert', str(work_dir), '--output-dir',
                str(staging), '--name', model_name, '--quantization', 'float16', *samples,
                *extra], cwd=TRAINING, env={**os.environ, 'KERAS_BACKEND': 'tensorflow'})
            if converted.returncode:
                raise SystemExit(f'error: converting {model_name} failed (above); nothing '
                                 f'written to {output_dir}; the network is in {work_dir}')
            describe_painting(staging / f'{model_name}.json', name, painting, artist, licence)
        written = []
        for model_name in (name, combined_name):
            model = staging / f'{model_name}.tflite'
            Path(sidecar_path(str(model))).replace(output_dir / f'{model_name}.json')
            model.replace(output_dir / model.name)
            written.append(output_dir / model.name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def describe_painting(path, name, painting, artist, licence):
    """Put the options' painting, artist and licence (those given) into the sidecar at path:
    the converter knows only the paintings of metadata.PAINTINGS."""
    given = {key: value for key, value in (
        ('painting', painting), ('artist', artist), ('licence', licence)) if value}
    if not given:
        return
    sidecar = read_sidecar(str(path))
    if 'styles' in sidecar:  # all styles: the new one is the last
        style = sidecar['styles'][sidecar['style_names'].index(name)]
        style.update(given)
        sidecar['painting'] = ', '.join(s['painting'] for s in sidecar['styles']
                                        if s.get('painting'))
        sidecar['artist'] = ', '.join(dict.fromkeys(s['artist'] for s in sidecar['styles']
                                                    if s.get('artist')))
        if licence:
            sidecar['licence'] = f'{name}: {licence}; the others: {sidecar["licence"]}'
    else:
        sidecar.update(given)
        sidecar.pop('artist_death_year', None)
    write_sidecar(str(path), sidecar)


def default_name(painting):
    """A catalog name [a-z0-9_]+ from the painting's file name."""
    stem = ''.join(c if c.isalnum() else '_' for c in Path(painting).stem.lower())
    return '_'.join(filter(None, stem.split('_'))) or 'my_style'


def build_parser():
    parser = argparse.ArgumentParser(
        prog='style-add', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('painting', help='the style image')
    parser.add_argument('--name', help='catalog name [a-z0-9_]+ (default: from the file name)')
    parser.add_argument('--painting-title', help="the sidecar's painting (default: from "
                        'metadata.PAINTINGS when the name is one of its paintings)')
    parser.add_argument('--artist', help="the sidecar's artist")
    parser.add_argument('--licence', help="the sidecar's licence of the painting")
    parser.add_argument('--minutes', type=float, default=DEFAULT_MINUTES,
                        help='wall-clock budget of this run, set-up included (conversion '
                        'after it: about a minute)')
    parser.add_argument('--checkpoint', type=Path, default=DEFAULT_CHECKPOINT,
                        help='the conditional network to add the style to')
    parser.add_argument('--combined-name',
                        help='catalog name of the model with all styles (default: '
                        '<checkpoint folder name up to its first "_">_<name>)')
    parser.add_argument('--content', type=Path, action='append',
                        help=f'content images (folders, repeatable; default {DEFAULT_CONTENT})')
    parser.add_argument('--output-dir', type=Path, default=USER_DATA / 'models',
                        help='where the .tflite files and sidecars go (name it in the node\'s '
                        'model_dirs)')
    parser.add_argument('--work-dir', type=Path,
                        help=f'training state and previews (default {USER_DATA}/runs/<name>)')
    parser.add_argument('--sample-dir', type=Path,
                        help="photos for the converter's parity check (default: synthetic)")
    parser.add_argument('--steps', type=int, default=10 ** 7,
                        help='stop at this step even inside the budget')
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--style-size', type=int, default=320,
                        help="the painting's shorter side for its Gram targets")
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--learning-rate', type=float, default=3e-2)
    parser.add_argument('--style-weight', type=float, default=5.0)
    parser.add_argument('--content-weight', type=float, default=train.DEFAULT_CONTENT_WEIGHT)
    parser.add_argument('--stability-weight', type=float, default=10.0)
    parser.add_argument('--halo-weight', type=float, default=0.4)
    parser.add_argument('--vgg-weights', default='hed')
    parser.add_argument('--checkpoint-every', type=int, default=50, help='steps')
    parser.add_argument('--keep-checkpoints', type=int, default=3)
    parser.add_argument('--preview-seconds', type=float, default=60.0)
    parser.add_argument('--seed', type=int, default=0)
    return parser


def main(argv=None):
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    command = shlex.join(['style-add'] + (sys.argv[1:] if argv is None else list(argv)))
    name = args.name or default_name(args.painting)
    if not NAME_PATTERN.match(name):
        raise SystemExit(f'error: --name {name!r} is not [a-z0-9_]+')
    source = checkpoints.load(args.checkpoint)
    if network.style_count(source.model) != len(source.styles):
        raise SystemExit(f'error: {args.checkpoint} has no style name per style input')
    if name in source.styles:
        raise SystemExit(f'error: {args.checkpoint} already has a style {name!r}')
    combined_name = args.combined_name or f'{args.checkpoint.name.split("_")[0]}_{name}'
    args.content = args.content or [DEFAULT_CONTENT]
    painting = Path(args.painting)
    try:  # clear errors before the minutes start
        for folder in args.content:
            list_images(folder, 1)
        load_image(painting)
    except FileNotFoundError as error:
        raise SystemExit(f'error: {error}')
    work_dir = args.work_dir or USER_DATA / 'runs' / name
    work_dir.mkdir(parents=True, exist_ok=True)

    trainer, style_weights = build_style_trainer(source, painting, args)
    deadline = started + args.minutes * 60
    budget = max(1.0, deadline - time.perf_counter())
    preview = resize(data.ContentImages(args.content)[0], *PREVIEW_SIZE)
    progress = StyleProgress(deadline, np.asarray(preview, np.float32)[None],
                             work_dir / 'previews', args.preview_seconds, style_weights,
                             work_dir / 'checkpoints')
    previous_handler = signal.signal(signal.SIGINT, progress.stop_on_interrupt)
    print(f'adding {name} ({painting}) to {args.checkpoint} ({", ".join(source.styles)}): '
          f'at most {budget / 60:.1f} minutes of training, state in {work_dir}', flush=True)
    try:
        steps_done = train.fit(trainer, fit_args(args, work_dir, budget), work_dir,
                               callbacks=[progress])
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    if progress.interrupted:
        print(f'stopped at step {steps_done}: training state in {work_dir / "checkpoints"}; '
              'the same command goes on from it', flush=True)
        return INTERRUPTED
    progress.write_preview(trainer.model, steps_done)
    save_network(trainer, source, name, painting, args, work_dir, command, steps_done)
    written = export(work_dir, name, combined_name, args.output_dir, args.painting_title,
                     args.artist, args.licence, args.sample_dir)
    print(f'{steps_done} steps; wrote {", ".join(map(str, written))} (with their sidecars); '
          f'the node lists them on its next ~/list_styles when model_dirs names '
          f'{args.output_dir}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
