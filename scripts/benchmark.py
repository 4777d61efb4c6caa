"""Benchmark: the bare stylizer per model, and the real node end to end.

1. Bare Stylizer: median ms/frame of every model in --model-dir and of the Fritz anchor, at
   640x480 and 320x240 frames, with 1 and 2 threads.
2. The node (a subprocess, as on a robot) kept saturated with 640x480 frames: output fps and
   latency, against the bare loop on the same model, threads and frame size.
Prints markdown tables and writes them to --output. Source scripts/env.sh first.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import threading
import time

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from demo import REPO, NodeProcess, Spinner, stamp_ns  # checks the DDS set-up
from style_transfer_interfaces.srv import ListStyles
from style_transfer_ros.catalog import Catalog
from style_transfer_ros.image_conversion import rgb_to_image_msg
from style_transfer_ros.stylizer import ModelError, Stylizer, find_runtime

ANCHOR = os.path.join(REPO, '..', 'shared', 'data', 'anchors', 'fritz',
                      'starry_night_640x480_025.tflite')
FRAME_SIZES = ((480, 640), (240, 320))  # (height, width)
THREADS = (1, 2)
WARM_UP_RUNS = 3
IN_FLIGHT = 2  # frames outstanding at the node: one being stylized, one waiting
STALL_SECONDS = 2.0


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
    return [1.0 / stylizer.num_styles] * stylizer.num_styles if stylizer.num_styles else None


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


class Saturator(Node):
    """Keeps IN_FLIGHT frames outstanding at the node: each stylized frame that comes back
    releases the next one, so the node always has a frame waiting but never a backlog
    (its input holds one frame). Frames lost on the best-effort input or dropped by the
    node are forgotten when a newer one returns, or after STALL_SECONDS without output."""

    def __init__(self, namespace, node_name, rgb):
        super(Saturator, self).__init__('benchmark_client', namespace=namespace)
        self.msg = rgb_to_image_msg(rgb, Header(frame_id='camera'))
        self.in_flight = []  # stamps sent and not yet returned
        self.received = []  # (receipt monotonic s, latency ms)
        self.first_output = threading.Event()
        self._last_output = -STALL_SECONDS
        self.publisher = self.create_publisher(
            Image, 'image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.create_subscription(Image, 'image_stylized', self._on_stylized,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.list_styles = self.create_client(ListStyles, node_name + '/list_styles')
        self.create_timer(0.25, self._restart_if_stalled)

    def _top_up(self):
        while len(self.in_flight) < IN_FLIGHT:
            now = self.get_clock().now()
            self.msg.header.stamp = now.to_msg()
            self.publisher.publish(self.msg)
            self.in_flight.append(now.nanoseconds)

    def _on_stylized(self, msg):
        stamp = stamp_ns(msg.header)
        self.received.append((time.monotonic(),
                              (self.get_clock().now().nanoseconds - stamp) / 1e6))
        self._last_output = time.monotonic()
        self.first_output.set()
        self.in_flight = [s for s in self.in_flight if s > stamp]
        self._top_up()

    def _restart_if_stalled(self):
        if time.monotonic() - self._last_output > STALL_SECONDS:
            self.in_flight = []
            self._top_up()


def node_table(model_dir, style, thread_counts, seconds, repeats):
    """The node's fps and latency under saturation, and the bare loop's fps for comparison,
    one row per thread count."""
    rows = [node_row(model_dir, style, threads, seconds, repeats) for threads in thread_counts]
    return '\n'.join([
        '| style | threads | frame | bare fps | node fps | node / bare | latency ms mean '
        '| latency ms p95 | node peak RSS MB |', '|---|---:|---|---:|---:|---:|---:|---:|---:|']
        + rows)


def node_row(model_dir, style, threads, seconds, repeats):
    height, width = FRAME_SIZES[0]
    frame = sample_frame(height, width)
    selection = Catalog([model_dir]).resolve(style)
    bare_ms = median_ms(Stylizer(selection.model_path, num_threads=threads), frame, repeats,
                        selection.weights)
    namespace, name = '/benchmark_%d' % os.getpid(), 'stylizer'
    os.makedirs(os.path.join(REPO, 'build'), exist_ok=True)
    node = NodeProcess(namespace, name, {
        'model_dirs': [model_dir], 'style': style, 'num_threads': threads,
        'processing_size': 0}, os.path.join(REPO, 'build', 'benchmark_node.log'))
    rclpy.init()
    client = Saturator(namespace, name, frame)
    spinner = Spinner(client)
    try:
        node.wait_for(client.list_styles)
        if not client.first_output.wait(60.0):
            raise SystemExit('no stylized frame within 60 s; node log:\n' + node.log_tail())
        time.sleep(2.0)  # warm-up
        start = time.monotonic()
        time.sleep(seconds)  # measuring
        end = time.monotonic()
        peak_rss_mb = node.peak_rss_mb()
    finally:
        node.stop()
        spinner.close()
        rclpy.try_shutdown()
    latencies = [ms for t, ms in client.received if start <= t < end]
    node_fps = len(latencies) / (end - start)
    bare_fps = 1000.0 / bare_ms
    return '| %s | %d | %dx%d | %.1f | %.1f | %.2f | %.1f | %.1f | %.0f |' % (
        style, threads, width, height, bare_fps, node_fps, node_fps / bare_fps,
        np.mean(latencies), np.percentile(latencies, 95), peak_rss_mb)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model-dir', default=os.path.join(REPO, 'style_transfer_ros', 'models'),
                        help='folder of *.tflite models (every file is timed)')
    parser.add_argument('--extra-model', action='append', default=[],
                        help='also time this .tflite in the bare table (e.g. other '
                        'quantizations of a shipped model); repeatable')
    parser.add_argument('--repeats', type=int, default=20, help='timed runs per figure')
    parser.add_argument('--style', help='node style (default: starry_night, else the first '
                        'catalog style)')
    parser.add_argument('--node-threads', type=int, nargs='+', default=list(THREADS),
                        help='inference threads of the node, one run each')
    parser.add_argument('--node-seconds', type=float, default=10.0)
    parser.add_argument('--output', default=os.path.join(REPO, 'build', 'benchmark.md'))
    args = parser.parse_args()

    model_dir = os.path.abspath(args.model_dir)
    model_paths = sorted(glob.glob(os.path.join(model_dir, '*.tflite')))
    catalog = Catalog([model_dir])
    if not model_paths or not catalog.entries:
        raise SystemExit('no models (with .json sidecars) in %s' % model_dir)
    notes = ['[1] A fixed-size model (input [1, 640, 480, 3]: height 640, width 480, portrait): '
             'it always runs at that size, with frames resized in and out, so both frame sizes '
             'cost about the same. "x anchor" is a model\'s fps divided by the anchor\'s at '
             'the same frame size and threads.']
    model_paths += [os.path.abspath(path) for path in args.extra_model]
    if os.path.isfile(ANCHOR):
        model_paths.append(ANCHOR)
    else:
        notes = ['Fritz anchor %s not found: no ratios.' % os.path.normpath(ANCHOR)]
    style = args.style or ('starry_night' if 'starry_night' in catalog.entries
                           else next(iter(catalog.entries)))
    report = '\n\n'.join([
        machine_header(),
        '## Bare stylizer (median of %d runs after %d warm-up runs)' % (args.repeats,
                                                                         WARM_UP_RUNS),
        bare_table(model_paths, args.repeats), '\n'.join(notes),
        '## Node end to end (%.0f s)' % args.node_seconds,
        node_table(model_dir, style, args.node_threads, args.node_seconds, args.repeats),
        'Method: the node runs as a subprocess on %dx%d frames sent over DDS (loopback). '
        'The client keeps %d frames outstanding and sends the next when a stylized frame '
        'comes back, so the node always has a frame waiting and no backlog builds up. '
        'Latency is header stamp to receipt. "bare fps" is Stylizer.stylize on the same '
        'model, threads and frame size in this process, measured just before. The client '
        'and DDS run on the same %d cores as the node: with as many inference threads as '
        'cores they take CPU from inference; on a robot the camera driver does too.'
        % (FRAME_SIZES[0][1], FRAME_SIZES[0][0], IN_FLIGHT, os.cpu_count())])
    print(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, 'w') as f:
        f.write(report + '\n')
    print('\nwrote %s' % args.output)


if __name__ == '__main__':
    main()
