"""Recognised against minutes of an add_style run: every training state of its work dir, the
new style alone, scored with evaluate's ruler on the test photos.

The network runs in Keras (float32; the float16 .tflite is 70+ dB from it), so one
conversion per state is not needed; the figure of the final .tflite is evaluate.py's.
Minutes are wall clock from the command's start (`--started`, seconds since the epoch) to
the state's file.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from . import checkpoints
from .evaluate import painting_ruler
from .images import list_images, load_image


def states(work_dir, every=1):
    """(step, weights file, mtime) of the run's training states, every `every`-th, oldest
    first, and always the last."""
    found = sorted((int(checkpoints.STATE_PATTERN.match(path.name)[1]), path)
                   for path in (work_dir / 'checkpoints').glob('ckpt-*.optimizer.npz'))
    chosen = found[::every] + ([found[-1]] if found and (len(found) - 1) % every else [])
    return [(step, path.with_name(f'ckpt-{step}.weights.h5'), path.stat().st_mtime)
            for step, path in chosen]


def build_parser():
    parser = argparse.ArgumentParser(prog='style-curve', description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dir', type=Path, help="add_style's --work-dir (after the run)")
    parser.add_argument('--style-image', required=True)
    parser.add_argument('--content-dir', required=True)
    parser.add_argument('--count', type=int, default=30)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--paintings-dir', help="default: the style image's folder")
    parser.add_argument('--started', type=float, required=True,
                        help='the run\'s start, seconds since the epoch (date +%%s)')
    parser.add_argument('--every', type=int, default=1, help='score every N-th state')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    checkpoint = checkpoints.load(args.work_dir)
    name = checkpoint.styles[-1]
    ruler = painting_ruler(args.style_image, args.paintings_dir, args.size)
    images = [load_image(path, args.size) for path in list_images(args.content_dir, args.count)]
    photos = [ruler.photo(image) for image in images]
    print(f'{name}: recognised of {len(images)} photos among {len(ruler.painting_grams)} '
          'paintings\n| step | minutes | recognised |\n|---:|---:|---:|', flush=True)
    for step, weights, mtime in states(args.work_dir, args.every):
        checkpoint.model.load_weights(weights)
        single = checkpoint.select_style(name).model
        nearest = [ruler.measure(np.clip(np.asarray(single(image[None].astype(np.float32)))[0],
                                         0, 255), photo)['nearest']
                   for image, photo in zip(images, photos)]
        print(f'| {step} | {(mtime - args.started) / 60:.1f} | '
              f'{nearest.count(ruler.style_name)} |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
