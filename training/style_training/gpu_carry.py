"""The prepared GPU run: `pack` builds the folder a lent GPU machine gets (no TensorFlow, no
package registry, at most 64 MiB carried), training/gpu_run.sh trains there on JAX, and
`finish` converts and evaluates here what came back. docs/training.md has the commands.

The folder: content.npz (content photos, shorter side the training size, as JPEG bytes),
the VGG16 loss weights (.npz), the start checkpoint (start/), the style images (styles/),
the wheels the GPU machine lacks (wheels/) and train_args.txt, the recipe as train.py
arguments relative to the folder.
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from style_transfer_ros.model_runtime import resize

from . import data, loss_network
from .images import list_images, load_image

MIB = 1 << 20
# What the GPU machine (CPython 3.12, x86_64) lacks for Keras on JAX; packaging, which
# `import keras` needs, may be there, but it is not listed.
WHEELS = ('keras', 'namex', 'optree', 'packaging')
WHEEL_PLATFORM = ('--python-version', '3.12', '--platform', 'manylinux2014_x86_64')
JPEG_QUALITY = 92
# Given by gpu_run.sh on the GPU machine, not by the recipe.
RUN_ARGUMENTS = ('--output-dir', '--checkpoint-dir', '--time-budget', '--content',
                 '--vgg-weights', '--fine-tune-checkpoint', '--style')


# The device tool carries the working tree too (about 5 MiB of tracked files) within 64 MiB.
MAX_MIB = 56.0


def pack(output, content, styles, recipe, image_size, fine_tune=None, wheels=None,
         max_mib=MAX_MIB, vgg_weights='hed'):
    """Build the carried folder; returns {file: bytes}. The content photos fill what the
    other files leave of max_mib, in a fixed random order."""
    output = Path(output)
    if output.exists():
        shutil.rmtree(output)
    (output / 'styles').mkdir(parents=True)
    given = [argument for argument in recipe if argument.split('=')[0] in RUN_ARGUMENTS]
    if given:
        raise ValueError(f'the recipe may not give {given}: gpu_run.sh and pack set them')
    arguments = list(recipe)
    vgg_source = loss_network.vgg16_weights_file() if vgg_weights == 'hed' else Path(vgg_weights)
    shutil.copy(vgg_source, output / 'vgg16.npz')
    arguments += ['--vgg-weights', 'vgg16.npz']
    style_specs = []
    for path, weight in data.parse_styles(styles):
        shutil.copy(path, output / 'styles' / Path(path).name)
        style_specs.append(f'styles/{Path(path).name}:{weight:g}')
    arguments += ['--style', ','.join(style_specs)]
    if fine_tune:
        source = Path(fine_tune)
        (output / 'start').mkdir()
        for name in ('model.keras', 'training.json'):
            if (source / name).exists() or (name == 'model.keras' and source.is_file()):
                shutil.copy(source / name if source.is_dir() else source,
                            output / 'start' / name)
        arguments += ['--fine-tune-checkpoint', 'start']
    (output / 'wheels').mkdir()
    for wheel in wheel_files(wheels or output.parent / 'gpu_wheels'):
        shutil.copy(wheel, output / 'wheels' / wheel.name)
    (output / 'train_args.txt').write_text('\n'.join(arguments) + '\n')
    used = sum(path.stat().st_size for path in output.rglob('*') if path.is_file())
    count = write_content(output / 'content.npz', content, image_size, max_mib * MIB - used)
    arguments += ['--content', 'content.npz']
    (output / 'train_args.txt').write_text('\n'.join(arguments) + '\n')
    sizes = {str(path.relative_to(output)): path.stat().st_size
             for path in sorted(output.rglob('*')) if path.is_file()}
    total = sum(sizes.values())
    print(f'{output}: {count} content photos, {total / MIB:.1f} MiB in {len(sizes)} files')
    return sizes


def wheel_files(folder):
    """The wheels of WHEELS in folder, downloaded there (pip, for the GPU machine's Python
    and platform) when one is missing."""
    folder = Path(folder)
    found = {name: sorted(folder.glob(f'{name}-*.whl')) for name in WHEELS}
    missing = [name for name, wheels in found.items() if not wheels]
    if missing:
        subprocess.run([sys.executable, '-m', 'pip', 'download', '--only-binary=:all:',
                        *WHEEL_PLATFORM, '--no-deps', '-d', str(folder), *missing], check=True)
        found = {name: sorted(folder.glob(f'{name}-*.whl')) for name in WHEELS}
    return [wheels[-1] for wheels in found.values()]


def write_content(path, sources, image_size, budget):
    """Content photos with their shorter side image_size, JPEG-encoded, into an .npz
    ('encoded' bytes and 'offsets', as data.ContentImages reads it) of at most budget bytes;
    returns how many."""
    files = [file for source in sources for file in list_images(source)]
    order = np.random.default_rng(0).permutation(len(files))
    chunks, size = [], 0
    for index in order:
        image = load_image(files[index])
        height, width = image.shape[:2]
        scale = image_size / min(height, width)
        image = resize(image, max(image_size, round(height * scale)),
                       max(image_size, round(width * scale)))
        ok, encoded = cv2.imencode('.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if size + encoded.size + 1024 > budget:
            break
        chunks.append(encoded.ravel())
        size += encoded.size
    if not chunks:
        raise ValueError(f'no room for content photos: {budget / MIB:.1f} MiB left')
    offsets = np.cumsum([0] + [chunk.size for chunk in chunks])
    np.savez(path, encoded=np.concatenate(chunks), offsets=offsets)
    return len(chunks)


def finish(returned, carry, content_dir, output, count=5, size=512):
    """Copy a run that came back (its folder is read-only) to output, convert it there to
    float16 TFLite (tflite/), each style alone for a conditional run, and evaluate each
    against its style image (evaluation/; the run's style paths start in the carried
    folder)."""
    from . import convert, evaluate
    result = Path(output)
    result.mkdir(parents=True, exist_ok=True)
    for path in Path(returned).iterdir():
        shutil.copy(path, result / path.name)
    settings = json.loads((result / 'training.json').read_text())
    styles = settings['styles']
    models = result / 'tflite'
    conditional = settings['num_styles'] > 1
    for style in styles:
        convert.main([str(result), '--quantization', 'float16', '--output-dir', str(models),
                      '--sample-dir', str(content_dir), '--name', style['name']] +
                     (['--select-style', style['name']] if conditional else []))
        evaluate.main(['--model', str(models / f'{style["name"]}.tflite'), '--content-dir',
                       str(content_dir), '--count', str(count), '--size', str(size),
                       '--style-image', str(Path(carry) / style['path']),
                       '--output-dir', str(result / 'evaluation' / style['name'])])


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m style_training.gpu_carry',
                                     description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    packing = commands.add_parser('pack', help='build the carried folder')
    packing.add_argument('--output', default='../build/gpu_carry')
    packing.add_argument('--content', action='append', required=True,
                         help='folder of content photos, repeatable')
    packing.add_argument('--style', action='append', required=True,
                         help='style image as path[:weight], repeatable or comma separated')
    packing.add_argument('--image-size', type=int, default=256,
                         help='the training size (the photos\' shorter side)')
    packing.add_argument('--fine-tune-checkpoint', help='the start: a run folder or .keras')
    packing.add_argument('--wheels', help='folder with the wheels (default: gpu_wheels '
                         'beside --output, filled with pip download)')
    packing.add_argument('--vgg-weights', default='hed')
    packing.add_argument('--max-mib', type=float, default=MAX_MIB,
                         help='the carried folder at most (default %(default)s: the working '
                         'tree travels with it, 64 MiB in all)')
    packing.add_argument('recipe', nargs=argparse.REMAINDER,
                         help='after --: train.py arguments (no paths; --image-size included)')
    finishing = commands.add_parser('finish', help='convert and evaluate a run that came back')
    finishing.add_argument('returned', help="the run's files ($OUT as it came back)")
    finishing.add_argument('--output', default='runs/gpu_run',
                           help='the run, its TFLite files and evaluations go here')
    finishing.add_argument('--carry', default='../build/gpu_carry', help='the packed folder')
    finishing.add_argument('--content-dir', default='../../shared/data/content_test/kodak24')
    finishing.add_argument('--count', type=int, default=5)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == 'finish':
        finish(args.returned, args.carry, args.content_dir, args.output, args.count)
        return
    recipe = [argument for argument in args.recipe if argument != '--']
    if '--image-size' not in recipe:
        recipe += ['--image-size', str(args.image_size)]
    try:
        pack(args.output, args.content, args.style, recipe, args.image_size,
             args.fine_tune_checkpoint, args.wheels, args.max_mib, args.vgg_weights)
    except ValueError as error:
        raise SystemExit(f'error: {error}')


if __name__ == '__main__':
    main()
