"""The stylizer node and a steady camera, each in its own process, as on a robot.

One way to run them for the demo, the benchmark and the tests: NodeProcess (parameters
encoded by parameter_arg), CameraProcess, StylizerClient and steady_camera_run; Spinner and
call_service for a client node in the calling process; bare_cpu_ms_per_frame, the bare
stylizer's CPU cost to set the node's against. Importing this module has no side effects (ROS
modules are imported where used); every process start checks that DDS is confined to
loopback (scripts/env.sh).

    python scripts/ros_processes.py camera --topic /image --fps 30   # a camera on its own
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

from style_transfer_ros.frame_statistics import percentile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def require_loopback_dds():
    """Refuse to start ROS processes unless scripts/env.sh confined DDS to this machine."""
    if (not os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
            or os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != 'LOCALHOST'):
        raise SystemExit('DDS is not confined to loopback: run `source scripts/env.sh` first '
                         '(it also puts the ROS packages on the paths).')


def parameter_arg(name, value):
    """`name:=value` for --ros-args -p (JSON is YAML, which the rcl parser reads)."""
    return '%s:=%s' % (name, json.dumps(value))


def _stat_cpu_seconds(path):
    """(name, user + system CPU seconds) from a /proc stat file."""
    with open(path) as stat:
        text = stat.read()
    fields = text.rsplit(')', 1)[1].split()
    name = text[text.index('(') + 1:text.rindex(')')]
    return name, (int(fields[11]) + int(fields[12])) / float(CLOCK_TICKS)


def thread_roles(pid, before, after):
    """CPU seconds between two thread_cpu_seconds samples by role: 'executor' (the main
    thread: rclpy's executor), 'dds' (Fast DDS's threads), 'worker' (the busiest other
    thread: inference and publishing) and 'other' (the rest, e.g. OpenCV's pool)."""
    used = dict((tid, (name, seconds - before[tid][1]))
                for tid, (name, seconds) in after.items() if tid in before)
    roles = {'executor': used.pop(pid, ('', 0.0))[1], 'dds': 0.0, 'worker': 0.0, 'other': 0.0}
    for tid in [tid for tid, (name, _) in used.items() if name.startswith('dds.')]:
        roles['dds'] += used.pop(tid)[1]
    if used:
        busiest = max(used, key=lambda tid: used[tid][1])
        roles['worker'] = used.pop(busiest)[1]
        roles['other'] = sum(seconds for _, seconds in used.values())
    return roles


class _Process(object):
    """A child process logging to a file, with CPU and memory figures from /proc."""

    def __init__(self, command, log_path):
        require_loopback_dds()
        self.log_path = log_path
        with open(log_path, 'w') as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.process.pid

    def cpu_seconds(self):
        """User + system CPU time of the process so far (all its threads)."""
        return _stat_cpu_seconds('/proc/%d/stat' % self.pid)[1]

    def thread_cpu_seconds(self):
        """{thread id: (thread name, user + system CPU seconds so far)} of the live threads."""
        threads = {}
        for tid in os.listdir('/proc/%d/task' % self.pid):
            try:
                threads[int(tid)] = _stat_cpu_seconds('/proc/%d/task/%s/stat' % (self.pid, tid))
            except (IOError, OSError):  # the thread ended meanwhile
                pass
        return threads

    def memory_mb(self, key='VmRSS'):
        """Resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
        with open('/proc/%d/status' % self.pid) as status:
            for line in status:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) / 1024.0
        return float('nan')

    def log_tail(self, chars=4000):
        with open(self.log_path) as log:
            return log.read()[-chars:]

    def stop(self, sig=signal.SIGINT, timeout=30.0):
        """Signal (a clean shutdown), wait, kill only if it hangs; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class NodeProcess(_Process):
    """The stylizer node (python -m style_transfer_ros.stylizer_node) with parameters."""

    def __init__(self, parameters, log_path, name='style_transfer', namespace='/',
                 remappings=()):
        command = [sys.executable, '-m', 'style_transfer_ros.stylizer_node', '--ros-args',
                   '-r', '__ns:=' + namespace, '-r', '__node:=' + name]
        for remapping in remappings:
            command += ['-r', remapping]
        for key, value in parameters.items():
            command += ['-p', parameter_arg(key, value)]
        super(NodeProcess, self).__init__(command, log_path)

    def wait_for_service(self, client, timeout=60.0):
        """Wait until the node offers client's service; raise with its log if it dies."""
        deadline = time.monotonic() + timeout
        while not client.wait_for_service(timeout_sec=0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError('the stylizer node did not come up; its log:\n'
                                   + self.log_tail())


class CameraProcess(_Process):
    """A camera driver stand-in: 640x480 (or any size) frames at a steady rate, best effort.

    Frames carry their publication time as header stamp, so a subscriber can measure latency.
    """

    def __init__(self, topic, fps, log_path, width=640, height=480, encoding='rgb8'):
        command = [sys.executable, os.path.abspath(__file__), 'camera', '--topic', topic,
                   '--fps', str(fps), '--width', str(width), '--height', str(height),
                   '--encoding', encoding]
        super(CameraProcess, self).__init__(command, log_path)


def stamp_ns(header):
    """A message header's stamp in nanoseconds."""
    return header.stamp.sec * 10 ** 9 + header.stamp.nanosec


class Spinner(object):
    """Spins an rclpy node in a background thread (a SingleThreadedExecutor: its idle cost is
    near zero); close() stops and joins the thread, then destroys the node."""

    def __init__(self, node):
        import threading
        from rclpy.executors import SingleThreadedExecutor
        self.node = node
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self):
        self.executor.shutdown()
        self.thread.join()
        self.node.destroy_node()


def call_service(client, request, timeout=60.0):
    """Call a service from a node that a Spinner spins; raise RuntimeError if the service is
    not offered or does not answer within timeout seconds."""
    import threading
    if not client.wait_for_service(timeout_sec=timeout):
        raise RuntimeError('no service %s' % client.srv_name)
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        raise RuntimeError('no answer from %s within %.0f s' % (client.srv_name, timeout))
    return future.result()


class StylizerClient(object):
    """A client node of one stylizer node, spinning in a background thread: it records each
    stylized frame's receipt time and latency, keeps the node's /diagnostics and calls its
    services. The demo's camera extends it; close() stops it."""

    def __init__(self, namespace, node_name='style_transfer', client_name=None):
        import threading
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from style_transfer_interfaces.srv import ListStyles

        if not rclpy.ok():
            rclpy.init()
        self.received = []  # (monotonic s, latency ms)
        self.diagnostics = []  # (monotonic s, {key: value})
        self.first_output = threading.Event()
        self._node_name = node_name
        self._hardware_id = '%s/%s' % (namespace.rstrip('/'), node_name)
        self.node = rclpy.create_node(client_name or 'client_%d' % os.getpid(),
                                      namespace=namespace)
        self.node.create_subscription(Image, 'image_stylized', self.on_output,
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.list_styles = self.node.create_client(ListStyles, node_name + '/list_styles')
        self._spinner = Spinner(self.node)

    def on_output(self, msg):
        """Record a stylized frame; return its latency in ms (header stamp to receipt)."""
        latency_ms = (self.node.get_clock().now().nanoseconds - stamp_ns(msg.header)) / 1e6
        self.received.append((time.monotonic(), latency_ms))
        self.first_output.set()
        return latency_ms

    def _on_diagnostics(self, array):
        for status in array.status:
            if status.hardware_id == self._hardware_id:
                self.diagnostics.append(
                    (time.monotonic(), dict((kv.key, kv.value) for kv in status.values)))

    def call(self, srv_type, service, request, timeout=60.0):
        """Call one of the node's services (its name under the node, e.g. 'set_style');
        raise RuntimeError if it does not answer in time."""
        client = self.node.create_client(srv_type, '%s/%s' % (self._node_name, service))
        try:
            return call_service(client, request, timeout)
        finally:
            self.node.destroy_client(client)

    def close(self):
        self._spinner.close()


def steady_camera_run(parameters, fps, seconds, log_dir, warm_up=3.0, width=640, height=480,
                      switch_to=None):
    """The node (with `parameters`) fed by a CameraProcess at `fps`; figures over `seconds`
    after `warm_up` seconds of output. switch_to: a style set through ~/set_style before the
    measured window. Returns a dict of figures (fps, latency, drops, the node's CPU)."""
    from style_transfer_interfaces.srv import SetStyle
    index = len(os.listdir(log_dir)) if os.path.isdir(log_dir) else 0
    os.makedirs(log_dir, exist_ok=True)
    namespace = '/steady_%d_%d' % (os.getpid(), index)
    node = NodeProcess(parameters, os.path.join(log_dir, 'node_%d.log' % index),
                       namespace=namespace)
    monitor = StylizerClient(namespace)
    camera = None
    try:
        node.wait_for_service(monitor.list_styles)
        camera = CameraProcess(namespace + '/image', fps,
                               os.path.join(log_dir, 'camera_%d.log' % index), width, height)
        if not monitor.first_output.wait(60.0):
            raise RuntimeError('no stylized frame within 60 s; node log:\n' + node.log_tail())
        if switch_to is not None:
            reply = monitor.call(SetStyle, 'set_style',
                                 SetStyle.Request(style=switch_to, strength=-1.0))
            if not reply.success:
                raise RuntimeError('set_style %s failed: %s' % (switch_to, reply.message))
        time.sleep(warm_up)  # let rates settle; what follows is the measured window
        threads_start = node.thread_cpu_seconds()
        cpu_start, start = node.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        cpu_end, end = node.cpu_seconds(), time.monotonic()
        roles = thread_roles(node.pid, threads_start, node.thread_cpu_seconds())
        rss_mb = node.memory_mb()
    finally:
        if camera is not None:
            camera.stop()
        exit_code = node.stop()
        monitor.close()
    latencies = [ms for t, ms in monitor.received if start <= t < end]
    window = [values for t, values in monitor.diagnostics if start <= t < end]
    outputs = len(latencies)
    return {
        'camera_fps': fps, 'seconds': round(end - start, 2),
        'input_fps': (round(sum(float(v['input_fps']) for v in window) / len(window), 1)
                      if window else float('nan')),
        'output_fps': round(outputs / (end - start), 1),
        'latency_ms_p50': round(percentile(latencies, 50), 1),
        'latency_ms_p95': round(percentile(latencies, 95), 1),
        'dropped': (int(window[-1]['dropped_frames']) - int(window[0]['dropped_frames'])
                    if window else -1),
        'node_cpu_percent': round(100.0 * (cpu_end - cpu_start) / (end - start), 1),
        'node_cpu_ms_per_frame': (round(1000.0 * (cpu_end - cpu_start) / outputs, 1)
                                  if outputs else float('nan')),
        'node_rss_mb': round(rss_mb, 1), 'node_exit_code': exit_code,
        'thread_ms_per_frame': dict(
            (role, round(1000.0 * seconds / outputs, 2) if outputs else float('nan'))
            for role, seconds in roles.items()),
    }


def camera_frames(height, width, count=8):
    """A few smooth colourful frames that pan, so consecutive frames differ."""
    import cv2
    import numpy as np
    noise = np.random.RandomState(0).randint(0, 256, (12, 20, 3)).astype(np.uint8)
    wide = cv2.resize(noise, (width + 8 * count, height), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(wide[:, 8 * i:8 * i + width]) for i in range(count)]


def bare_cpu_ms_per_frame(model_path, num_threads, processing_size, calls=20, weights=None,
                          height=480, width=640, warm_up=3):
    """CPU milliseconds (time.process_time: this process, all its threads) per
    Stylizer.stylize call on camera_frames of height x width, after warm_up calls: the bare
    stylizer's cost, to compare with the node's CPU per output frame."""
    from style_transfer_ros.stylizer import Stylizer
    stylizer = Stylizer(model_path, num_threads=num_threads, processing_size=processing_size)
    frames = camera_frames(height, width)
    for i in range(warm_up):
        stylizer.stylize(frames[i % len(frames)], style_weights=weights)
    start = time.process_time()
    for i in range(calls):
        stylizer.stylize(frames[i % len(frames)], style_weights=weights)
    return 1000.0 * (time.process_time() - start) / calls


def run_camera(args):
    """Publish until SIGINT/SIGTERM at a fixed rate (absolute deadlines: no drift)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from style_transfer_ros.image_conversion import rgb_to_image_msg

    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    node = rclpy.create_node('camera_%d' % os.getpid())
    publisher = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
    messages = [rgb_to_image_msg(rgb, Header(frame_id='camera'), args.encoding)
                for rgb in camera_frames(args.height, args.width)]
    period = 1.0 / args.fps
    published, start = 0, time.monotonic()
    while not stopping:
        msg = messages[published % len(messages)]
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        published += 1
        delay = start + published * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - start
    print(json.dumps({'published': published, 'seconds': round(elapsed, 3),
                      'fps': round(published / elapsed, 2)}))
    node.destroy_node()
    rclpy.try_shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    camera = commands.add_parser('camera', help='publish frames at a steady rate')
    camera.add_argument('--topic', default='image')
    camera.add_argument('--fps', type=float, default=30.0)
    camera.add_argument('--width', type=int, default=640)
    camera.add_argument('--height', type=int, default=480)
    camera.add_argument('--encoding', default='rgb8', choices=('rgb8', 'bgr8'))
    args = parser.parse_args()
    require_loopback_dds()
    run_camera(args)


if __name__ == '__main__':
    main()
