"""Benchmark: the bare stylizer per model, and the real node under a steady camera.

1. Bare Stylizer: median ms/frame of every model in --model-dir and of the Fritz anchor, at
   640x480 and 320x240 frames, with 1 and 2 threads.
2. The node as on a robot: a camera process publishes 640x480 rgb8 frames (best effort) at a
   fixed rate (15 / 30 / 60 fps) to the node, in its own process, running the default style at
   processing_size 480 and 0 with 1 and auto threads. Per row: input and output fps, latency,
   drops and the node's CPU per output frame next to the bare stylizer's CPU per frame (the
   difference is the node's own cost) and split by thread (executor, inference worker, DDS,
   other), as median and min-max of --repeats-node runs.
3. Recordings: a 640x480 video through the stylize command's pipeline (decoder and encoder
   threads) against the bare stylizer on the same decoded frames, in the same run.
Prints markdown tables and writes them to --output. Source scripts/env.sh first.

    python scripts/benchmark.py                    # the full run (about 5-10 minutes)
    python scripts/benchmark.py --quick            # one repeat of the 30 fps rows (a minute)
    python scripts/benchmark.py --recordings-only  # only the recordings rows (a minute)
"""
import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

from ros_processes import (REPO, bare_cpu_ms_per_frame, camera_frames, require_loopback_dds,
                           steady_camera_run)
from style_transfer_ros import recordings
from style_transfer_ros.catalog import Catalog, StyleSelection
from style_transfer_ros.model_runtime import find_runtime
from style_transfer_ros.node_parameters import auto_threads
from style_transfer_ros.stylize import NoProgress, run_pipeline
from style_transfer_ros.stylizer import ModelError, Stylizer

ANCHOR = os.path.join(REPO, '..', 'shared', 'data', 'anchors', 'fritz',
                      'starry_night_640x480_025.tflite')
FRAME_SIZES = ((480, 640), (240, 320))  # (height, width)
THREADS = (1, 2)
WARM_UP_RUNS = 3
CAMERA_SIZE = (480, 640)  # (height, width) of the steady camera's frames
NODE_DIAGNOSTICS_PERIOD = 0.5
# The node table's cells: (key of a steady_camera_run figure, column title, format).
NODE_FIGURES = (
    ('input_fps', 'input fps', '%.1f'),
    ('output_fps', 'output fps', '%.1f'),
    ('latency_ms_p50', 'latency p50 ms', '%.0f'),
    ('latency_ms_p95', 'latency p95 ms', '%.0f'),
    ('dropped', 'dropped', '%d'),
    ('node_cpu_ms_per_frame', 'node CPU ms/frame', '%.1f'),
)

# The node's threads (ros_processes.thread_roles): where its CPU per output frame goes.
THREAD_ROLES = ('executor', 'worker', 'dds', 'other')


def sample_frame(height, width):
    """A smooth colourful frame; the content does not change a network's speed."""
    noise = np.random.RandomState(0).randint(0, 256, (12, 16, 3)).astype(np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def median_ms(stylizer, frame, repeats, weights=None):
    for _ in range(WARM_UP_RUNS):
        stylizer.stylize(frame, style_weights=weights)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        stylizer.stylize(frame, style_weights=weights)
        times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times))


def equal_weights(stylizer):
    """Every style of the model equally (the catalog's rule for a file chosen by path)."""
    return StyleSelection(stylizer.model_path).weights_for(stylizer.num_styles)


def quantization(model_path):
    try:
        with open(os.path.splitext(model_path)[0] + '.json') as sidecar:
            return json.load(sidecar).get('quantization', '?')
    except (OSError, ValueError):
        return '?'


def bare_table(model_paths, repeats):
    """ms/frame for every model, size and thread count; fps ratios to the anchor."""
    results, failures = {}, {}
    for path in model_paths:
        for threads in THREADS:
            try:
                stylizer = Stylizer(path, num_threads=threads, processing_size=0)
            except ModelError as error:  # e.g. an int8 model this runtime cannot run
                failures[path] = str(error)
                break
            for size in FRAME_SIZES:
                results[path, threads, size] = median_ms(
                    stylizer, sample_frame(*size), repeats, equal_weights(stylizer))
            print('timed %s, %d thread(s)' % (os.path.basename(path), threads))
    header = ['model', 'quantization', 'KB', 'threads']
    for height, width in FRAME_SIZES:
        header += ['%dx%d ms' % (width, height), 'fps', 'x anchor']
    lines = ['| %s |' % ' | '.join(header), '|---|---|' + '---:|' * (len(header) - 2)]
    for path in model_paths:
        is_anchor = path == ANCHOR
        name = 'Fritz anchor %s [1]' % os.path.basename(path) if is_anchor else \
            os.path.basename(path)
        if path in failures:
            lines.append('| %s | %s | %.0f | - | fails: %s |' % (
                name, quantization(path), os.path.getsize(path) / 1024.0,
                failures[path].replace('|', '/').replace('\n', ' ')))
            continue
        for threads in THREADS:
            cells = [name, 'none' if is_anchor else quantization(path),
                     '%.0f' % (os.path.getsize(path) / 1024.0), str(threads)]
            for size in FRAME_SIZES:
                ms = results[path, threads, size]
                anchor_ms = results.get((ANCHOR, threads, size))
                cells += ['%.1f' % ms, '%.1f' % (1000.0 / ms),
                          '%.2f' % (anchor_ms / ms) if anchor_ms else 'n/a']
            lines.append('| %s |' % ' | '.join(cells))
    return '\n'.join(lines)


def node_configurations(processing_sizes, thread_options):
    """(processing size, the node's num_threads, the threads that means, label) per node
    configuration; num_threads 0 is auto: the node runs every core but one. Options that mean
    the same thread count run once, under both labels, and give the node 0 if one is auto."""
    chosen = {}  # threads -> [num_threads parameter, labels]
    for option in thread_options:
        threads = option or auto_threads()
        entry = chosen.setdefault(threads, [option, []])
        entry[0] = min(entry[0], option)
        label = 'auto (%d)' % threads if option == 0 else str(option)
        if label not in entry[1]:
            entry[1].append(label)
    return [(size, parameter, threads, ' = '.join(labels)) for size in processing_sizes
            for threads, (parameter, labels) in chosen.items()]


def spread(values, fmt):
    """Median and min-max of a figure over the repeats: '12.3 (11.9-12.8)'."""
    values = [v for v in values if v == v]  # no NaN
    if not values:
        return 'n/a'
    median = fmt % float(np.median(values))
    if len(values) == 1:
        return median
    return '%s (%s-%s)' % (median, fmt % min(values), fmt % max(values))


def node_table(model_dir, style, camera_rates, configurations, repeats, seconds, warm_up,
               bare_calls, log_dir):
    """Steady-camera rows: each configuration at each camera rate, `repeats` rounds of runs
    (so a slow spell of the machine spreads over the rows). Each round first measures the bare
    stylizer's CPU per frame in this process for every configuration (same model, threads and
    processing size), and each run's own cost is against its round's bare figure."""
    selection = Catalog([model_dir]).resolve(style)
    rows = [(size, parameter, threads, label, fps)
            for size, parameter, threads, label in configurations for fps in camera_rates]
    runs = dict((row, []) for row in rows)  # row -> [(run figures, bare CPU ms/frame)]
    for repeat in range(repeats):
        bare = {}
        for size, _, threads, label in configurations:
            bare[size, threads] = bare_cpu_ms_per_frame(
                selection.model_path, threads, size, calls=bare_calls,
                weights=selection.weights, height=CAMERA_SIZE[0], width=CAMERA_SIZE[1])
            print('round %d/%d: bare %s, processing_size %d, threads %s: %.1f CPU ms/frame'
                  % (repeat + 1, repeats, style, size, label, bare[size, threads]))
        for row in rows:
            size, parameter, threads, label, fps = row
            run = steady_camera_run(
                {'model_dirs': [model_dir], 'style': style, 'num_threads': parameter,
                 'processing_size': size, 'diagnostics_period': NODE_DIAGNOSTICS_PERIOD},
                fps, seconds, log_dir, warm_up=warm_up, width=CAMERA_SIZE[1],
                height=CAMERA_SIZE[0])
            runs[row].append((run, bare[size, threads]))
            print('round %d/%d: node at processing_size %d, threads %s, camera %g fps: %s'
                  % (repeat + 1, repeats, size, label, fps, json.dumps(run)))
    header = ['processing size', 'threads', 'camera fps'] + [
        title for _, title, _ in NODE_FIGURES] + [
        'bare CPU ms/frame', 'node own cost ms/frame', 'own cost % of bare'] + [
        '%s ms/frame' % role for role in THREAD_ROLES]
    lines = ['| %s |' % ' | '.join(header), '|' + '---:|' * len(header)]
    for row in rows:
        size, _, threads, label, fps = row
        own = [(run['node_cpu_ms_per_frame'] - bare_ms, bare_ms) for run, bare_ms in runs[row]]
        cells = [str(size) if size else '0 (frame)', label, '%g' % fps]
        cells += [spread([run[key] for run, _ in runs[row]], fmt) for key, _, fmt in NODE_FIGURES]
        cells += [spread([bare_ms for _, bare_ms in runs[row]], '%.1f'),
                  spread([ms for ms, _ in own], '%.1f'),
                  spread([100.0 * ms / bare_ms for ms, bare_ms in own], '%.0f')]
        cells += [spread([run['thread_ms_per_frame'][role] for run, _ in runs[row]], '%.1f')
                  for role in THREAD_ROLES]
        exit_codes = [run['node_exit_code'] for run, _ in runs[row]]
        if any(exit_codes):
            cells[-1] += ' (node exit codes %s)' % exit_codes
        lines.append('| %s |' % ' | '.join(cells))
    return '\n'.join(lines)


def write_camera_video(path, frames, fps=30.0):
    """A panning 640x480 mp4 (mp4v, as stylize writes mp4) of `frames` frames."""
    height, width = CAMERA_SIZE
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height))
    pictures = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb in camera_frames(height, width)]
    for index in range(frames):
        writer.write(pictures[index % len(pictures)])
    writer.release()


def recording_table(model_dir, style, processing_sizes, frames, repeats):
    """fps of a video through stylize's pipeline (decode, stylize, encode to mp4) and of the
    bare stylizer on the same frames already decoded, alternately in each repeat; the same
    Stylizer (model, auto threads, processing size) for both."""
    selection = Catalog([model_dir]).resolve(style)
    threads = auto_threads()
    folder = tempfile.mkdtemp(prefix='benchmark_recordings_')
    source = os.path.join(folder, 'camera.mp4')
    write_camera_video(source, frames)
    decoded = [frame.rgb for frame in recordings.Video(
        source, argparse.Namespace(fourcc=None)).frames()]
    header = ['processing size', 'threads', 'frames', 'bare stylizer fps', 'stylize video fps',
              'ratio']
    lines = ['| %s |' % ' | '.join(header), '|' + '---:|' * len(header)]
    for size in processing_sizes:
        stylizer = Stylizer(selection.model_path, num_threads=threads, processing_size=size)

        def paint(rgb):
            return stylizer.stylize(rgb, style_weights=selection.weights)

        bare, pipeline = [], []
        for repeat in range(repeats):
            started = time.perf_counter()
            for rgb in decoded:
                paint(rgb)
            bare.append(len(decoded) / (time.perf_counter() - started))
            video = recordings.Video(source, argparse.Namespace(fourcc=None))
            output = os.path.join(folder, 'out_%d_%d.mp4' % (size, repeat))
            started = time.perf_counter()
            counts = run_pipeline(video.frames(), paint, lambda: video.writer(output),
                                  NoProgress())
            pipeline.append(counts['stylized'] / (time.perf_counter() - started))
            print('recordings: processing_size %d, repeat %d/%d: bare %.1f fps, stylize video '
                  '%.1f fps' % (size, repeat + 1, repeats, bare[-1], pipeline[-1]))
        ratios = [p / b for p, b in zip(pipeline, bare)]
        lines.append('| %s | auto (%d) | %d | %s | %s | %s |' % (
            size or '0 (frame)', threads, len(decoded), spread(bare, '%.1f'),
            spread(pipeline, '%.1f'), spread(ratios, '%.2f')))
    shutil.rmtree(folder, ignore_errors=True)
    return '\n'.join(lines)


def machine_header():
    cpu = platform.processor() or 'unknown CPU'
    with open('/proc/cpuinfo') as cpuinfo:
        for line in cpuinfo:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    runtime, version, _ = find_runtime()
    return '\n'.join([
        '# Style transfer benchmark', '',
        '- machine: %s, %d cores, %s' % (cpu, os.cpu_count(), platform.platform()),
        '- runtime: %s %s, Python %s' % (runtime, version, platform.python_version()),
        '- date: %s' % datetime.datetime.now().strftime('%Y-%m-%d %H:%M')])


def parse_args():
    """The command line, with --quick's or the full run's defaults filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model-dir', default=os.path.join(REPO, 'style_transfer_ros', 'models'),
                        help='folder of *.tflite models (every file is timed)')
    parser.add_argument('--extra-model', action='append', default=[],
                        help='also time this .tflite in the bare table (e.g. other '
                        'quantizations of a shipped model); repeatable')
    parser.add_argument('--quick', action='store_true',
                        help='a short run: the bare table with 10 timed runs, then one repeat '
                        'of the node rows at a 30 fps camera with a 4 s window')
    parser.add_argument('--bare-cpu-calls', type=int,
                        help='stylize calls per bare CPU ms/frame figure next to the node rows '
                        '(default 40; --quick 20)')
    parser.add_argument('--repeats', type=int,
                        help='timed runs per bare figure (default 20; --quick 10)')
    parser.add_argument('--style', help='node style (default: starry_night, else the first '
                        'catalog style)')
    parser.add_argument('--camera-fps', type=float, nargs='+',
                        help='camera rates of the node rows (default 15 30 60; --quick 30)')
    parser.add_argument('--processing-sizes', type=int, nargs='+', default=[480, 0],
                        help="the node's processing_size per row (0 = the frame's size)")
    parser.add_argument('--node-threads', type=int, nargs='+', default=[1, 0],
                        help='inference threads of the node per row; 0 = auto, every core '
                        'but one (%d here)' % auto_threads())
    parser.add_argument('--repeats-node', type=int,
                        help='runs per node row, reported as median (min-max) '
                        '(default 3; --quick 1)')
    parser.add_argument('--node-seconds', type=float,
                        help='measured window per node run (default 5; --quick 4)')
    parser.add_argument('--node-warm-up', type=float, default=2.0,
                        help='seconds of output before the window opens')
    parser.add_argument('--recordings-only', action='store_true',
                        help='only the recordings rows (the stylize command on a video)')
    parser.add_argument('--recording-frames', type=int,
                        help='frames of the recordings rows\' video (default 300; --quick 90)')
    parser.add_argument('--repeats-recording', type=int,
                        help='runs per recordings row (default 3; --quick 1)')
    parser.add_argument('--output', default=os.path.join(REPO, 'build', 'benchmark.md'))
    args = parser.parse_args()
    quick = dict(repeats=10, camera_fps=[30.0], repeats_node=1, node_seconds=4.0,
                 bare_cpu_calls=20, recording_frames=90, repeats_recording=1)
    full = dict(repeats=20, camera_fps=[15.0, 30.0, 60.0], repeats_node=3, node_seconds=5.0,
                bare_cpu_calls=40, recording_frames=300, repeats_recording=3)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def timed_models(model_dir, extra_models):
    """The models of the bare table (the folder's, the extras, the anchor if present) and the
    table's note about the anchor."""
    model_paths = sorted(glob.glob(os.path.join(model_dir, '*.tflite')))
    model_paths += [os.path.abspath(path) for path in extra_models]
    if not os.path.isfile(ANCHOR):
        return model_paths, 'Fritz anchor %s not found: no ratios.' % os.path.normpath(ANCHOR)
    return model_paths + [ANCHOR], (
        '[1] A fixed-size model (input [1, 640, 480, 3]: height 640, width 480, portrait): it '
        'always runs at that size, with frames resized in and out, so both frame sizes cost '
        'about the same. "x anchor" is a model\'s fps divided by the anchor\'s at the same '
        'frame size and threads.')


def recordings_section(args, model_dir, style):
    return [
        '## Recordings: a %dx%d mp4 through `stylize`, %s, %s'
        % (CAMERA_SIZE[1], CAMERA_SIZE[0], style, 'median (min-max) of %d runs'
           % args.repeats_recording if args.repeats_recording > 1 else 'one run'),
        recording_table(model_dir, style, args.processing_sizes, args.recording_frames,
                        args.repeats_recording),
        'Stylize video fps: frames / seconds of the stylize command\'s pipeline (a decoder '
        'thread reading the mp4 with OpenCV, the stylizer, an encoder thread writing mp4v); '
        'bare stylizer fps: the same Stylizer on the same frames decoded beforehand; ratio: '
        'the two in the same repeat.']


def node_section(args, model_dir, style, started):
    """The steady-camera table and how it was measured; started: the run's monotonic start."""
    configurations = node_configurations(args.processing_sizes, args.node_threads)
    log_dir = os.path.join(REPO, 'build', 'benchmark_logs')  # the node and camera logs
    shutil.rmtree(log_dir, ignore_errors=True)  # of this run only
    node = node_table(model_dir, style, args.camera_fps, configurations, args.repeats_node,
                      args.node_seconds, args.node_warm_up, args.bare_cpu_calls, log_dir)
    height, width = CAMERA_SIZE
    return [
        '## Node under a steady camera: %s, %dx%d rgb8, %s'
        % (style, width, height, 'median (min-max) of %d runs' % args.repeats_node
           if args.repeats_node > 1 else 'one run'),
        node,
        'Command: `%s`. A camera process publishes %dx%d rgb8 frames (best effort, like a '
        'camera driver) at the camera rate to the node, which runs in its own process; this '
        'process subscribes to the stylized frames. Each run measures a %.0f s window after '
        "%.0f s of output. Input fps and dropped frames come from the node's /diagnostics; "
        'latency is header stamp (set at publication) to receipt here; node CPU is the node '
        "process's user + system time (/proc) over the window divided by the frames it "
        'published. Bare CPU ms/frame is time.process_time over %d Stylizer.stylize calls in '
        'this process (same model, threads, processing size and %dx%d frames), measured at the '
        "start of each round of runs; the node's own cost (conversion, DDS, Python) is the "
        'difference. The camera, this process and DDS share the %d cores with the node. '
        'Total time %.1f min.'
        % (' '.join(['python scripts/benchmark.py'] + sys.argv[1:]), width, height,
           args.node_seconds, args.node_warm_up, args.bare_cpu_calls, width, height,
           os.cpu_count(), (time.monotonic() - started) / 60.0)]


def main():
    args = parse_args()
    if not args.recordings_only:
        require_loopback_dds()  # the node rows run ROS processes; fail before the bare table
    model_dir = os.path.abspath(args.model_dir)
    catalog = Catalog([model_dir])
    model_paths, anchor_note = timed_models(model_dir, args.extra_model)
    if not catalog.entries:
        raise SystemExit('no models (with .json sidecars) in %s' % model_dir)
    style = args.style or ('starry_night' if 'starry_night' in catalog.entries
                           else next(iter(catalog.entries)))
    started = time.monotonic()
    recording_rows = recordings_section(args, model_dir, style)
    if args.recordings_only:
        write_report('\n\n'.join([machine_header()] + recording_rows), args.output)
        return
    sections = [machine_header(),
                '## Bare stylizer (median of %d runs after %d warm-up runs)'
                % (args.repeats, WARM_UP_RUNS),
                bare_table(model_paths, args.repeats), anchor_note]
    sections += node_section(args, model_dir, style, started)
    write_report('\n\n'.join(sections + recording_rows), args.output)


def write_report(report, path):
    print(report)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(report + '\n')
    print('\nwrote %s' % path)


if __name__ == '__main__':
    main()
