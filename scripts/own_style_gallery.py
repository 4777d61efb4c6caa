"""Gallery rows of docs/your_own_style.md: per style, docs/gallery/own_<style>.jpg shows the
painting beside the node's 640x480 output of scripts/gallery.py's photo (its Stylizer), each at
320x240. From the repository root, after `source scripts/env.sh`:

    python scripts/own_style_gallery.py ~/.local/share/style_transfer_ros/models udnie
"""
import argparse
import os

import cv2
import numpy as np

from gallery import SHARED, load_photo, save, stylize
from ros_processes import REPO

TILE = (320, 240)  # width, height


def fitted(rgb):
    """rgb scaled (area) to fit in a TILE, centred on white."""
    scale = min(TILE[0] / rgb.shape[1], TILE[1] / rgb.shape[0])
    small = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    tile = np.full((TILE[1], TILE[0], 3), 255, np.uint8)
    top, left = (TILE[1] - small.shape[0]) // 2, (TILE[0] - small.shape[1]) // 2
    tile[top:top + small.shape[0], left:left + small.shape[1]] = small
    return tile


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('models', help="add_style's --output-dir")
    parser.add_argument('styles', nargs='+', help='style names (their paintings are in '
                        'shared/data/styles)')
    parser.add_argument('--photo', default=os.path.join(SHARED, 'content_test', 'extra',
                                                        'tubingen.jpg'))
    parser.add_argument('--output-dir', default=os.path.join(REPO, 'docs', 'gallery'))
    args = parser.parse_args(argv)
    photo = load_photo(args.photo)
    for style in args.styles:
        painting = cv2.imread(os.path.join(SHARED, 'styles', style + '.jpg'))
        out = stylize(os.path.join(args.models, style + '.tflite'), photo)
        row = np.concatenate([fitted(cv2.cvtColor(painting, cv2.COLOR_BGR2RGB)), fitted(out)], 1)
        save(os.path.join(args.output_dir, 'own_%s.jpg' % style), row, 85)


if __name__ == '__main__':
    main()
