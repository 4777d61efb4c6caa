"""README gallery: every shipped style on one photo at its full 640x480 size, and a 100 % crop
of the default style next to the Fritz anchor's output on the same photo.

Runs the node's own Stylizer (2 threads, processing_size 0: the whole frame at full size), so
the pictures are what the node publishes. Multi-style models are shown blending their first
two styles 50/50, as set_style does live, and alone in each style that has no single-style
model of its own (as <model>_<style>.jpg). From the repository root, after `source scripts/env.sh`:

    python scripts/gallery.py            # writes docs/gallery/
"""
import argparse
import os
import sys

import cv2
import numpy as np

from ros_processes import REPO

SHARED = os.path.join(REPO, '..', 'shared', 'data')
WIDTH, HEIGHT = 640, 480
CROP = (280, 120, 320, 240)  # x, y, width, height of the 100 % crop (Tuebingen's roofs)


def load_photo(path):
    """The photo as RGB, resized (area) and centre-cropped to 640x480."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit('cannot read photo %s' % path)
    height, width = bgr.shape[:2]
    scale = max(WIDTH / float(width), HEIGHT / float(height))
    size = (int(round(width * scale)), int(round(height * scale)))
    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    left, top = (size[0] - WIDTH) // 2, (size[1] - HEIGHT) // 2
    return cv2.cvtColor(bgr[top:top + HEIGHT, left:left + WIDTH], cv2.COLOR_BGR2RGB)


def stylize(model_path, photo, style_weights=None):
    from style_transfer_ros.stylizer import Stylizer
    stylizer = Stylizer(model_path, num_threads=2, processing_size=0)
    return stylizer.stylize(photo, style_weights=style_weights)


def save(path, rgb, quality):
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    print('wrote %s' % os.path.relpath(path, REPO))


def main(argv=None):
    from style_transfer_ros.catalog import Catalog
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--photo', default=os.path.join(SHARED, 'content_test', 'extra',
                                                        'tubingen.jpg'))
    parser.add_argument('--anchor', default=os.path.join(SHARED, 'anchors', 'fritz',
                                                         'starry_night_640x480_025.tflite'))
    parser.add_argument('--models', default=os.path.join(REPO, 'style_transfer_ros', 'models'))
    parser.add_argument('--default-style', default='starry_night')
    parser.add_argument('--output-dir', default=os.path.join(REPO, 'docs', 'gallery'))
    parser.add_argument('--quality', type=int, default=90, help='JPEG quality')
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    photo = load_photo(args.photo)
    save(os.path.join(args.output_dir, 'photo.jpg'), photo, args.quality)
    catalog = Catalog([args.models])
    outputs = {}
    for entry in catalog.entries.values():
        count = len(entry.style_names)
        blend = [0.5, 0.5] + [0.0] * (count - 2) if count else None
        outputs[entry.name] = stylize(entry.model_path, photo, blend)
        save(os.path.join(args.output_dir, entry.name + '.jpg'), outputs[entry.name],
             args.quality)
        for index, style in enumerate(entry.style_names):
            if style not in catalog.entries:
                alone = [float(index == other) for other in range(count)]
                save(os.path.join(args.output_dir, '%s_%s.jpg' % (entry.name, style)),
                     stylize(entry.model_path, photo, alone), args.quality)
    if args.default_style not in outputs:
        raise SystemExit('no model named %s in %s' % (args.default_style, args.models))
    if not os.path.exists(args.anchor):
        print('no anchor at %s: no crop comparison' % args.anchor, file=sys.stderr)
        return
    x, y, width, height = CROP
    crops = [image[y:y + height, x:x + width]
             for image in (photo, outputs[args.default_style], stylize(args.anchor, photo))]
    gap = np.full((height, 4, 3), 255, np.uint8)
    save(os.path.join(args.output_dir, 'crop_%s_vs_anchor.jpg' % args.default_style),
         np.hstack([crops[0], gap, crops[1], gap, crops[2]]), 95)


if __name__ == '__main__':
    main()
