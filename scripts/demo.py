"""Demo: the real stylizer node on a synthetic camera, switching through every style.

The node runs as a subprocess, as on a robot. This process is the camera (a smooth pan and
zoom over public-domain / CC0 photos that scikit-image ships, 640x480), switches styles
through ~/set_style, and writes a side-by-side video (input | stylized), PNG frames and an
fps summary. It fails (exit code 1, with the reason) if any style's output falls below half
the camera rate (--min-rate-fraction). Use scripts/demo.sh, or source scripts/env.sh first:
DDS must stay on loopback.
"""
import argparse
import json
import math
import os
import queue
import sys
import time

import cv2
import numpy as np

from ros_processes import REPO, NodeProcess, StylizerClient, require_loopback_dds, stamp_ns

WIDTH, HEIGHT = 640, 480
# skimage.data photos whose docstrings release them into the public domain or under CC0.
PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
SECONDS_PER_PHOTO = 5.0
DIAGNOSTICS_PERIOD = 0.5
WARM_UP = 'warm-up'  # frames sent before the first style step; not reported


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


class Camera(StylizerClient):
    """The stylizer's client that also publishes camera frames on a timer and pairs each
    stylized frame with its input.

    `segment` labels the frames sent now (None: send nothing). Stylized frames go to
    `outputs` as (input, stylized, segment, frame index, latency ms) for the main thread.
    `spans` holds each segment's first and last publication (monotonic s), so its rates are
    measured over the time its own frames were sent.
    """

    def __init__(self, namespace, node_name, photos, fps):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        self.photos = photos
        self.segment = None
        self.frames_in = {}
        self.spans = {}  # segment -> [first, last] publication, monotonic s
        self.sent = {}  # stamp -> (input, segment, index), until its output or a newer one
        self.outputs = queue.Queue()
        self._header = Header(frame_id='camera')  # publish() serializes: one header will do
        self._index = 0
        self._start = time.monotonic()
        super(Camera, self).__init__(namespace, node_name, client_name='demo_camera')
        self.publisher = self.node.create_publisher(
            Image, 'image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.node.create_timer(1.0 / fps, self._publish)

    def _publish(self):
        from style_transfer_ros.image_conversion import rgb_to_image_msg
        segment = self.segment  # read once: the main thread changes it
        if segment is None:
            return
        now = time.monotonic()
        rgb = camera_frame(self.photos, now - self._start)
        self._header.stamp = self.node.get_clock().now().to_msg()
        self._index += 1
        self.sent[stamp_ns(self._header)] = (rgb, segment, self._index)
        self.frames_in[segment] = self.frames_in.get(segment, 0) + 1
        self.spans.setdefault(segment, [now, now])[1] = now
        if len(self.sent) > 100:  # the node drops frames: forget the oldest
            del self.sent[next(iter(self.sent))]
        self.publisher.publish(rgb_to_image_msg(rgb, self._header))

    def on_output(self, msg):
        from style_transfer_ros.image_conversion import image_msg_to_rgb
        latency_ms = super(Camera, self).on_output(msg)
        stamp = stamp_ns(msg.header)
        for older in [s for s in self.sent if s < stamp]:  # dropped by the node
            del self.sent[older]
        if stamp in self.sent:
            rgb, segment, index = self.sent.pop(stamp)
            self.outputs.put((rgb, image_msg_to_rgb(msg), segment, index, latency_ms))


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
    """(label, SetStyle request fields) for every style in the catalog, one live blend and
    one strength change."""
    steps = []
    for info in styles:
        names = ['%s/%s' % (info.name, s) for s in info.style_names] or [info.name]
        steps += [(name, {'style': name, 'strength': 1.0}) for name in names]
    multi = next((info for info in styles if len(info.style_names) >= 2), None)
    if multi is not None:
        first, second = multi.style_names[:2]
        steps.append(('%s: %s 0.5 + %s 0.5' % (multi.name, first, second), {
            'blend_styles': [first, second], 'blend_weights': [0.5, 0.5], 'strength': 1.0}))
    steps.append(('%s @ strength 0.5' % steps[0][0],
                  {'style': steps[0][1]['style'], 'strength': 0.5}))
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
    """Mean of a node diagnostics figure over the windows received wholly within [start, end]
    (monotonic s)."""
    values = [float(v[key]) for received, v in diagnostics
              if received - DIAGNOSTICS_PERIOD >= start and received <= end and v[key] != 'nan']
    return round(sum(values) / len(values), 2) if values else None


def summarize(steps_run, camera, recorder, fps):
    """A row per step. Rates count the step's own frames over the time they were published
    (first to last publication plus one camera period), so outputs still in flight when the
    step ends count, and short steps give steady figures."""
    rows = {}
    for label, active_style, start, end in steps_run:
        latencies = recorder.latencies.get(label, [])
        first, last = camera.spans.get(label, (0.0, -1.0 / fps))
        published = last - first + 1.0 / fps
        rows[label] = {
            'active_style': active_style,
            'seconds': round(end - start, 2),
            'frames_in': camera.frames_in.get(label, 0),
            'frames_out': len(latencies),
            'input_fps': round(camera.frames_in.get(label, 0) / published, 2),
            'output_fps': round(len(latencies) / published, 2),
            'latency_ms_mean': round(float(np.mean(latencies)), 1) if latencies else None,
            'node_inference_ms_mean': node_figure(camera.diagnostics, start, end,
                                                  'inference_ms_mean'),
        }
    return rows


def slow_styles(rows, fps, min_fraction):
    """The labels whose output fps falls below min_fraction of the camera's rate."""
    return [label for label, row in rows.items() if row['output_fps'] < min_fraction * fps]


def markdown(rows):
    lines = ['| style | frames in | frames out | input fps | output fps | latency ms (mean) '
             '| inference ms (node) |', '|---|---:|---:|---:|---:|---:|---:|']
    for label, row in rows.items():
        figures = ['n/a' if row[k] is None else row[k]
                   for k in ('latency_ms_mean', 'node_inference_ms_mean')]
        lines.append('| %s | %d | %d | %.1f | %.1f | %s | %s |' % (
            label, row['frames_in'], row['frames_out'], row['input_fps'], row['output_fps'],
            *figures))
    return '\n'.join(lines)


def run(args):
    """Run the demo; return the process exit code (1 when a style is too slow)."""
    import rclpy
    from style_transfer_interfaces.srv import ListStyles, SetStyle
    from style_transfer_ros.catalog import Catalog

    model_dir = os.path.abspath(args.model_dir)
    catalog = Catalog([model_dir])
    if not catalog.entries:
        sys.exit('no style models in %s (a model is a .tflite file with a .json sidecar)%s'
                 % (model_dir, ''.join('\n  ' + p for p in catalog.problems)))
    photos = load_photos()
    os.makedirs(args.output, exist_ok=True)
    namespace, name = '/demo_%d' % os.getpid(), 'stylizer'
    node = NodeProcess({
        'model_dirs': [model_dir], 'style': next(iter(catalog.entries)),
        'processing_size': args.processing_size, 'num_threads': args.threads,
        'diagnostics_period': DIAGNOSTICS_PERIOD}, os.path.join(args.output, 'node.log'),
        name=name, namespace=namespace)
    camera = Camera(namespace, name, photos, args.fps)
    recorder = Recorder(args.output, args.fps, args.png_every, args.max_pngs)
    try:
        try:
            node.wait_for_service(camera.list_styles)
            catalog_reply = camera.call(ListStyles, 'list_styles', ListStyles.Request(), 30.0)
        except RuntimeError as error:
            sys.exit(str(error))
        if not catalog_reply.styles:
            sys.exit('the node lists no styles; its log:\n' + node.log_tail())
        wait_for_first_output(camera)
        steps_run = []
        for label, fields in style_steps(catalog_reply.styles):
            try:
                reply = camera.call(SetStyle, 'set_style', SetStyle.Request(**fields))
            except RuntimeError as error:
                sys.exit('set_style %s failed: %s' % (label, error))
            if not reply.success:
                sys.exit('set_style %s failed: %s' % (label, reply.message))
            print('painting %s' % reply.active_style)
            start = time.monotonic()
            camera.segment = label
            recorder.record_until(camera.outputs, time.monotonic() + args.seconds_per_style)
            camera.segment = None
            steps_run.append((label, reply.active_style, start, time.monotonic()))
        recorder.record_until(camera.outputs, time.monotonic() + 1.0)  # frames in flight
    finally:
        exit_code = node.stop()
        camera.close()
        rclpy.try_shutdown()
        recorder.video.release()
    rows = summarize(steps_run, camera, recorder, args.fps)
    slow = slow_styles(rows, args.fps, args.min_rate_fraction)
    summary = {'runtime': catalog_reply.runtime, 'node_exit_code': exit_code,
               'camera_fps': args.fps, 'frame_size': [HEIGHT, WIDTH],
               'processing_size': args.processing_size, 'threads': args.threads,
               'min_output_fps': args.min_rate_fraction * args.fps, 'slow_styles': slow,
               'video': recorder.video_path, 'pngs': recorder.pngs, 'styles': rows}
    with open(os.path.join(args.output, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print('\n%s\n\nRuntime %s; node exit code %d. Wrote %s, %d PNGs and summary.json to %s'
          % (markdown(rows), catalog_reply.runtime, exit_code, recorder.video_path,
             recorder.pngs, args.output))
    if slow:
        print('\nFAILED: the node fell behind the %.0f fps camera: output below %.1f fps '
              '(%.2f of the camera rate) for %s. See %s.'
              % (args.fps, args.min_rate_fraction * args.fps, args.min_rate_fraction,
                 ', '.join('%s (%.1f fps)' % (label, rows[label]['output_fps'])
                           for label in slow), os.path.join(args.output, 'node.log')),
              file=sys.stderr)
        return 1
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model-dir', default=os.path.join(REPO, 'style_transfer_ros', 'models'),
                        help='folder of *.tflite models with .json sidecars')
    parser.add_argument('--output', default='demo_output', help='folder for the results')
    parser.add_argument('--seconds-per-style', type=float, default=3.0,
                        help='how long each style (and the blend and strength steps) runs')
    parser.add_argument('--fps', type=float, default=20.0, help='camera publish rate')
    parser.add_argument('--min-rate-fraction', type=float, default=0.5,
                        help='fail (exit code 1) if any style\'s output fps falls below this '
                        'fraction of the camera rate; 0 turns the check off')
    parser.add_argument('--processing-size', type=int, default=0,
                        help="longest side the model sees; 0 = the frame's size")
    parser.add_argument('--threads', type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help='TFLite threads in the node (default: one core left for this '
                        'camera stream and DDS)')
    parser.add_argument('--png-every', type=int, default=5, help='save every k-th frame as PNG')
    parser.add_argument('--max-pngs', type=int, default=100, help='at most this many PNGs')
    args = parser.parse_args()
    require_loopback_dds()  # before the ROS imports, which need env.sh's paths as well
    sys.exit(run(args))


if __name__ == '__main__':
    main()
