"""Demo: the real stylizer node on a synthetic camera, switching through every style.

The node runs as a subprocess, as on a robot. This process is the camera (a smooth pan and
zoom over public-domain / CC0 photos that scikit-image ships, 640x480), switches styles
through ~/set_style, and writes a side-by-side video (input | stylized), PNG frames and an
fps summary. Use scripts/demo.sh, or source scripts/env.sh first: DDS must stay on loopback.
"""
import argparse
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time


def require_loopback_dds():
    """Refuse to run unless scripts/env.sh has confined DDS traffic to this machine."""
    if (not os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
            or os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != 'LOCALHOST'):
        sys.exit('DDS is not confined to loopback: run `source scripts/env.sh` first '
                 '(it also puts the ROS packages on the paths).')


require_loopback_dds()  # before the ROS imports, which need env.sh's paths as well

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from style_transfer_interfaces.srv import ListStyles, SetStyle  # noqa: E402
from style_transfer_ros.catalog import Catalog  # noqa: E402
from style_transfer_ros.image_conversion import image_msg_to_rgb, rgb_to_image_msg  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, HEIGHT = 640, 480
# skimage.data photos whose docstrings release them into the public domain or under CC0.
PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
SECONDS_PER_PHOTO = 5.0
DIAGNOSTICS_PERIOD = 0.5
WARM_UP = 'warm-up'  # frames sent before the first style step; not reported


class NodeProcess(object):
    """The stylizer node as a subprocess (python -m ...), logging to a file."""

    def __init__(self, namespace, name, parameters, log_path):
        command = [sys.executable, '-m', 'style_transfer_ros.stylizer_node', '--ros-args',
                   '-r', '__ns:=' + namespace, '-r', '__node:=' + name]
        for key, value in parameters.items():
            command += ['-p', '%s:=%s' % (key, json.dumps(value))]  # JSON is YAML
        self.log_path = log_path
        with open(log_path, 'w') as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def wait_for(self, client, timeout=60.0):
        """Wait until the node offers client's service; exit with its log if it dies."""
        deadline = time.monotonic() + timeout
        while not client.wait_for_service(timeout_sec=0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit('the stylizer node did not come up; its log:\n' + self.log_tail())

    def peak_rss_mb(self):
        with open('/proc/%d/status' % self.process.pid) as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0

    def log_tail(self, chars=4000):
        with open(self.log_path) as log:
            return log.read()[-chars:]

    def stop(self, timeout=30.0):
        """SIGINT (a clean shutdown), then wait; kill only if it hangs. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Spinner(object):
    """Spins a node in a background thread; close() stops and joins it, then destroys it."""

    def __init__(self, node):
        self.node = node
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin)
        self.thread.start()

    def close(self):
        self.executor.shutdown()
        self.thread.join()
        self.node.destroy_node()


def stamp_ns(header):
    return header.stamp.sec * 10 ** 9 + header.stamp.nanosec


def load_photos():
    from skimage import data
    return [getattr(data, name)() for name in PHOTOS]


def camera_frame(photos, t):
    """The camera's view at time t: a slow pan and zoom, cutting to the next photo."""
    photo = photos[int(t / SECONDS_PER_PHOTO) % len(photos)]
    phase = 2 * math.pi * (t % SECONDS_PER_PHOTO) / SECONDS_PER_PHOTO
    height, width = photo.shape[:2]
    zoom = 1.25 - 0.25 * math.cos(phase)  # 1 (the whole photo) .. 1.5 .. 1
    view_w = min(width, height * WIDTH / HEIGHT) / zoom
    view_h = view_w * HEIGHT / WIDTH
    left = (width - view_w) / 2 * (1 + math.sin(phase))
    top = (height - view_h) / 2 * (1 + 0.5 * math.sin(2 * phase))
    scale = WIDTH / view_w
    matrix = np.float32([[scale, 0, -left * scale], [0, scale, -top * scale]])
    return cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


class Camera(Node):
    """Publishes camera frames on a timer and pairs each stylized frame with its input.

    `segment` labels the frames sent now (None: send nothing). Stylized frames go to
    `outputs` as (input, stylized, segment, frame index, latency ms) for the main thread.
    """

    def __init__(self, namespace, node_name, photos, fps):
        super(Camera, self).__init__('demo_camera', namespace=namespace)
        self.photos = photos
        self.segment = None
        self.frames_in = {}
        self.sent = {}  # stamp -> (input, segment, index), until its output or a newer one
        self.outputs = queue.Queue()
        self.diagnostics = []  # (stamp s, {key: value}) of our node
        self._hardware_id = '%s/%s' % (namespace, node_name)
        self._index = 0
        self._start = time.monotonic()
        self.publisher = self.create_publisher(
            Image, 'image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.create_subscription(Image, 'image_stylized', self._on_stylized,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.list_styles = self.create_client(ListStyles, node_name + '/list_styles')
        self.set_style = self.create_client(SetStyle, node_name + '/set_style')
        self.create_timer(1.0 / fps, self._publish)

    def _publish(self):
        segment = self.segment  # read once: the main thread changes it
        if segment is None:
            return
        rgb = camera_frame(self.photos, time.monotonic() - self._start)
        header = Header(frame_id='camera', stamp=self.get_clock().now().to_msg())
        self._index += 1
        self.sent[stamp_ns(header)] = (rgb, segment, self._index)
        self.frames_in[segment] = self.frames_in.get(segment, 0) + 1
        if len(self.sent) > 100:  # the node drops frames: forget the oldest
            del self.sent[next(iter(self.sent))]
        self.publisher.publish(rgb_to_image_msg(rgb, header))

    def _on_stylized(self, msg):
        stamp = stamp_ns(msg.header)
        latency_ms = (self.get_clock().now().nanoseconds - stamp) / 1e6
        for older in [s for s in self.sent if s < stamp]:  # dropped by the node
            del self.sent[older]
        if stamp in self.sent:
            rgb, segment, index = self.sent.pop(stamp)
            self.outputs.put((rgb, image_msg_to_rgb(msg), segment, index, latency_ms))

    def _on_diagnostics(self, array):
        for status in array.status:
            if status.hardware_id == self._hardware_id:
                values = dict((kv.key, kv.value) for kv in status.values)
                self.diagnostics.append((stamp_ns(array.header) / 1e9, values))


class Recorder(object):
    """Writes side-by-side frames to an MP4 (mp4v) and every k-th one to a PNG; keeps stats."""

    def __init__(self, output_dir, fps, png_every, max_pngs):
        self.frames_dir = os.path.join(output_dir, 'frames')
        os.makedirs(self.frames_dir, exist_ok=True)
        self.video_path = os.path.join(output_dir, 'demo.mp4')
        self.video = cv2.VideoWriter(self.video_path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                     (2 * WIDTH, HEIGHT))
        self.png_every, self.max_pngs = png_every, max_pngs
        self.pngs = 0
        self.written = 0
        self.last_index = 0
        self.latencies = {}  # segment -> [ms]

    def add(self, rgb, stylized, segment, index, latency_ms):
        self.latencies.setdefault(segment, []).append(latency_ms)
        side = np.hstack([rgb, cv2.resize(stylized, (WIDTH, HEIGHT))])
        (text_w, text_h), _ = cv2.getTextSize(segment, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
        cv2.rectangle(side, (WIDTH, 0), (WIDTH + text_w + 20, text_h + 20), (0, 0, 0), -1)
        cv2.putText(side, segment, (WIDTH + 10, text_h + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (255, 255, 255), 2, cv2.LINE_AA)
        bgr = cv2.cvtColor(side, cv2.COLOR_RGB2BGR)
        # Hold each stylized frame until the next, so the video runs at the camera's pace.
        for _ in range(max(1, index - self.last_index)):
            self.video.write(bgr)
        self.last_index = index
        if self.written % self.png_every == 0 and self.pngs < self.max_pngs:
            cv2.imwrite(os.path.join(self.frames_dir, '%05d.png' % self.written), bgr)
            self.pngs += 1
        self.written += 1

    def record_until(self, outputs, deadline):
        """Record stylized frames as they come until the deadline (monotonic seconds)."""
        while True:
            try:
                output = outputs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if output[2] != WARM_UP:
                self.add(*output)


def style_steps(styles):
    """(label, request) for every style in the catalog, one live blend, one strength change."""
    steps = []
    for info in styles:
        names = ['%s/%s' % (info.name, s) for s in info.style_names] or [info.name]
        steps += [(name, SetStyle.Request(style=name, strength=1.0)) for name in names]
    multi = next((info for info in styles if len(info.style_names) >= 2), None)
    if multi is not None:
        first, second = multi.style_names[:2]
        steps.append(('%s: %s 0.5 + %s 0.5' % (multi.name, first, second), SetStyle.Request(
            blend_styles=[first, second], blend_weights=[0.5, 0.5], strength=1.0)))
    steps.append(('%s @ strength 0.5' % steps[0][0],
                  SetStyle.Request(style=steps[0][1].style, strength=0.5)))
    return steps


def wait_for_first_output(camera, timeout=60.0):
    """Send warm-up frames until one comes back stylized (DDS discovery both ways)."""
    camera.segment = WARM_UP
    try:
        camera.outputs.get(timeout=timeout)
    except queue.Empty:
        sys.exit('no stylized frame within %.0f s' % timeout)
    camera.segment = None


def node_figure(diagnostics, start, end, key):
    """Mean of a node diagnostics figure over the windows that lie wholly within [start, end]."""
    values = [float(v[key]) for stamp, v in diagnostics
              if stamp - DIAGNOSTICS_PERIOD >= start and stamp <= end and v[key] != 'nan']
    return round(sum(values) / len(values), 2) if values else None


def summarize(steps_run, camera, recorder):
    rows = {}
    for label, active_style, start, end in steps_run:
        latencies = recorder.latencies.get(label, [])
        rows[label] = {
            'active_style': active_style,
            'seconds': round(end - start, 2),
            'frames_in': camera.frames_in.get(label, 0),
            'frames_out': len(latencies),
            'output_fps': round(len(latencies) / (end - start), 2),
            'latency_ms_mean': round(float(np.mean(latencies)), 1) if latencies else None,
            'node_inference_ms_mean': node_figure(camera.diagnostics, start, end,
                                                  'inference_ms_mean'),
        }
    return rows


def markdown(rows):
    lines = ['| style | frames in | frames out | output fps | latency ms (mean) '
             '| inference ms (node) |', '|---|---:|---:|---:|---:|---:|']
    for label, row in rows.items():
        figures = ['n/a' if row[k] is None else row[k]
                   for k in ('latency_ms_mean', 'node_inference_ms_mean')]
        lines.append('| %s | %d | %d | %.1f | %s | %s |' % (
            label, row['frames_in'], row['frames_out'], row['output_fps'], *figures))
    return '\n'.join(lines)


def run(args):
    model_dir = os.path.abspath(args.model_dir)
    catalog = Catalog([model_dir])
    if not catalog.entries:
        sys.exit('no style models in %s (a model is a .tflite file with a .json sidecar)%s'
                 % (model_dir, ''.join('\n  ' + p for p in catalog.problems)))
    photos = load_photos()
    os.makedirs(args.output, exist_ok=True)
    namespace, name = '/demo_%d' % os.getpid(), 'stylizer'
    node = NodeProcess(namespace, name, {
        'model_dirs': [model_dir], 'style': next(iter(catalog.entries)),
        'processing_size': args.processing_size, 'num_threads': args.threads,
        'diagnostics_period': DIAGNOSTICS_PERIOD}, os.path.join(args.output, 'node.log'))
    rclpy.init()
    camera = Camera(namespace, name, photos, args.fps)
    recorder = Recorder(args.output, args.fps, args.png_every, args.max_pngs)
    spinner = Spinner(camera)
    try:
        node.wait_for(camera.list_styles)
        catalog_reply = camera.list_styles.call(ListStyles.Request(), timeout_sec=30.0)
        if catalog_reply is None or not catalog_reply.styles:
            sys.exit('the node lists no styles; its log:\n' + node.log_tail())
        wait_for_first_output(camera)
        steps_run = []
        for label, request in style_steps(catalog_reply.styles):
            reply = camera.set_style.call(request, timeout_sec=60.0)
            if reply is None or not reply.success:
                sys.exit('set_style %s failed: %s' % (label, reply and reply.message))
            print('painting %s' % reply.active_style)
            start = time.time()
            camera.segment = label
            recorder.record_until(camera.outputs, time.monotonic() + args.seconds_per_style)
            camera.segment = None
            steps_run.append((label, reply.active_style, start, time.time()))
        recorder.record_until(camera.outputs, time.monotonic() + 1.0)  # frames in flight
    finally:
        exit_code = node.stop()
        spinner.close()
        rclpy.try_shutdown()
        recorder.video.release()
    rows = summarize(steps_run, camera, recorder)
    summary = {'runtime': catalog_reply.runtime, 'node_exit_code': exit_code,
               'camera_fps': args.fps, 'frame_size': [HEIGHT, WIDTH],
               'processing_size': args.processing_size, 'threads': args.threads,
               'video': recorder.video_path, 'pngs': recorder.pngs, 'styles': rows}
    with open(os.path.join(args.output, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print('\n%s\n\nRuntime %s; node exit code %d. Wrote %s, %d PNGs and summary.json to %s'
          % (markdown(rows), catalog_reply.runtime, exit_code, recorder.video_path,
             recorder.pngs, args.output))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model-dir', default=os.path.join(REPO, 'style_transfer_ros', 'models'),
                        help='folder of *.tflite models with .json sidecars')
    parser.add_argument('--output', default='demo_output', help='folder for the results')
    parser.add_argument('--seconds-per-style', type=float, default=3.0,
                        help='how long each style (and the blend and strength steps) runs')
    parser.add_argument('--fps', type=float, default=20.0, help='camera publish rate')
    parser.add_argument('--processing-size', type=int, default=0,
                        help="longest side the model sees; 0 = the frame's size")
    parser.add_argument('--threads', type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help='TFLite threads in the node (default: one core left for this '
                        'camera stream and DDS)')
    parser.add_argument('--png-every', type=int, default=5, help='save every k-th frame as PNG')
    parser.add_argument('--max-pngs', type=int, default=100, help='at most this many PNGs')
    run(parser.parse_args())


if __name__ == '__main__':
    main()
