"""Time efficient-network candidates against the current network and the Fritz anchor.

Every candidate is built with seeded random weights, converted with the project's converter
(float32 and float16, dynamic H/W) and timed at 640x480 with ai_edge_litert: the interpreter's
invoke alone and Stylizer.stylize (uint8 frame in and out, as scripts/benchmark.py times the
shipped models). The shared 2-core VM drifts by +-10 % within minutes, so models are timed in
interleaved rounds (every model once per round, in a rotated order) and each figure is the
median over all rounds; ratios to the anchor and to the current network come from the same
run. Run from the repository root after `source scripts/env.sh`:

    nice -n 10 python scripts/bench_heads.py --output-dir build/bench_heads
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from style_training import network
from style_training.convert import convert_model, nano_problems, operator_versions
from style_transfer_ros.stylizer import Stylizer

REPO = Path(__file__).resolve().parents[1]
ANCHOR = REPO.parent / 'shared' / 'data' / 'anchors' / 'fritz' / 'starry_night_640x480_025.tflite'
SHIPPED = REPO / 'style_transfer_ros' / 'models' / 'starry_night.tflite'  # the default style
FRAME = (480, 640)  # height, width; the anchor is a fixed 640x480 portrait model
# name -> build_transformer options of the efficient network (alpha 0.25).
CANDIDATES = {
    'current': {},
    'edge': {'padding': 'edge'},
    'gain': {'head': 'gain'},
    'affine': {'head': 'affine'},
    'refine': {'head': 'refine'},
    'blocks4': {'blocks': 4},
    'quarter48': {'quarter_channels': 48},
    'edge_gain': {'padding': 'edge', 'head': 'gain'},
    'edge_affine': {'padding': 'edge', 'head': 'affine'},
    'edge_refine': {'padding': 'edge', 'head': 'refine'},
    'edge_gain_blocks4': {'padding': 'edge', 'head': 'gain', 'blocks': 4},
    'edge_affine_blocks4': {'padding': 'edge', 'head': 'affine', 'blocks': 4},
    'edge_gain_quarter48': {'padding': 'edge', 'head': 'gain', 'quarter_channels': 48},
    'edge_paint': {'padding': 'edge', 'head': 'paint'},
    'edge_paint_decoder': {'padding': 'edge', 'head': 'paint_decoder'},
}


def build(options, seed=0):
    """The candidate with seeded random weights: the new heads start at zero, and weights
    that a converter could fold away would make a candidate look cheaper than it is."""
    model = network.build_transformer('efficient', 0.25, **options)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) + (w.ndim == 2)
                       for w in model.get_weights()])
    return model


def convert_candidates(candidates, directory):
    """{(name, quantization): .tflite path} and {name: parameter count}."""
    paths, params = {}, {}
    for name, options in candidates.items():
        model = build(options)
        params[name] = model.count_params()
        for quantization in ('none', 'float16'):
            path = Path(directory) / f'{name}_{quantization}.tflite'
            convert_model(model, path, quantization)
            paths[name, quantization] = path
    return paths, params


def frame():
    """A smooth colourful frame, as scripts/benchmark.py uses (content does not change speed)."""
    import cv2
    noise = np.random.RandomState(0).randint(0, 256, (12, 16, 3)).astype(np.uint8)
    return cv2.resize(noise, FRAME[::-1], interpolation=cv2.INTER_CUBIC)


def time_ms(function, repeats):
    """ms of each of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - start))
    return times


def time_models(paths, threads=2, rounds=40, repeats=3):
    """{key: (invoke ms list, stylize ms list)}: every run of the interleaved rounds."""
    image = frame()
    runners = {}
    for key, path in paths.items():
        stylizer = Stylizer(str(path), num_threads=threads)
        stylizer.stylize(image)  # allocates at the frame's size, warms up
        # invoke alone: the network on the input already in the interpreter's buffer
        runners[key] = (stylizer.runner.invoke, lambda s=stylizer: s.stylize(image))
    samples = {key: ([], []) for key in paths}
    keys = list(paths)
    for round_index in range(rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            for sample, function in zip(samples[key], runners[key]):
                sample.extend(time_ms(function, repeats))
    return samples


def table(times, paths, params):
    """Markdown: per model ms, ratios to the anchor and to `current` (same quantization),
    file size, parameters and whether its ops load on the TF 2.5 runtime (the Nano)."""
    anchor = times['anchor']
    lines = ['| candidate | quantization | params | KB | TF 2.5 ops | invoke ms | x anchor '
             '| x current | stylize ms | x anchor | x current |',
             '|---|---|---:|---:|---|' + '---:|' * 6]
    for key, measured in times.items():
        name, quantization = ('Fritz anchor', 'none') if key == 'anchor' else key
        current = times.get(('current', quantization), measured)
        cells = [name, quantization, f'{params[name]:,}' if name in params else '-',
                 f'{paths[key].stat().st_size / 1024:.0f}',
                 'no' if nano_problems(operator_versions(paths[key])) else 'yes']
        for index, ms in enumerate(measured):
            cells += [f'{ms:.1f}', f'{anchor[index] / ms:.2f}', f'{current[index] / ms:.2f}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--candidates', help='comma separated (default: all)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=40)
    parser.add_argument('--repeats', type=int, default=3, help='runs per model and round')
    parser.add_argument('--output-dir', help='keep the .tflite files here')
    args = parser.parse_args(argv)
    names = args.candidates.split(',') if args.candidates else list(CANDIDATES)
    directory = args.output_dir or tempfile.mkdtemp(prefix='bench_heads_')
    Path(directory).mkdir(parents=True, exist_ok=True)
    paths, params = convert_candidates({name: CANDIDATES[name] for name in names}, directory)
    paths['shipped', 'none'], paths['anchor'] = SHIPPED, ANCHOR
    samples = time_models(paths, args.threads, args.rounds, args.repeats)
    times = {key: tuple(float(np.median(s)) for s in pair) for key, pair in samples.items()}
    print(f'{FRAME[1]}x{FRAME[0]}, {args.threads} threads, median of {args.rounds} rounds x '
          f'{args.repeats} runs')
    print(table(times, paths, params))


if __name__ == '__main__':
    main()
