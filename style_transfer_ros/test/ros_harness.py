"""Start the real node in its own process and talk to it over real DDS (loopback only).

Tests get a `NodeUnderTest` with a client node spinning in a background thread: publish
frames, wait for stylized frames (queue with timeouts, no sleeps), call services and set
parameters. The environment (domain id, loopback-only Fast DDS profile) comes from
scripts/env.sh, which scripts/test.sh sources.
"""

import itertools
import os
import queue
import signal

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ros_processes import NodeProcess, Spinner, call_service
from ros_processes import stamp_ns as ros_stamp_ns
from style_transfer_interfaces.srv import ListStyles, SetStyle
from style_transfer_ros.image_conversion import image_msg_to_rgb, rgb_to_image_msg

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, 'fixtures')
PACKAGE_ROOT = os.path.dirname(HERE)
_names = itertools.count()


def make_frame(height=48, width=64, seed=0):
    """A smooth colourful RGB frame (gradients plus a few blocks)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([255.0 * x / max(width - 1, 1), 255.0 * y / max(height - 1, 1),
                      np.full((height, width), 128.0)], axis=-1)
    for _ in range(4):
        top, left = rng.randint(0, height // 2), rng.randint(0, width // 2)
        image[top:top + height // 4, left:left + width // 4] = rng.randint(0, 256, 3)
    return image.astype(np.uint8)


def image_msg(rgb, stamp_ns, frame_id='camera', encoding='rgb8'):
    header = Header(frame_id=frame_id,
                    stamp=Time(sec=stamp_ns // 10 ** 9, nanosec=stamp_ns % 10 ** 9))
    return rgb_to_image_msg(rgb, header, encoding)


class NodeUnderTest(object):
    """The stylizer node in its own process (a ros_processes.NodeProcess) plus a client node
    in this process."""

    def __init__(self, parameters, node_name=None, subscribe_output=True, ready_timeout=60.0):
        index = next(_names)
        self.name = node_name or 'stylizer_%d_%d' % (os.getpid(), index)
        self.input_topic = '/test_%d_%d/image' % (os.getpid(), index)
        self.output_topic = '/test_%d_%d/image_stylized' % (os.getpid(), index)
        self._node_process = NodeProcess(
            parameters, os.path.join(os.environ.get('PYTEST_LOG_DIR', '/tmp'),
                                     '%s.log' % self.name),
            name=self.name, remappings=('image:=' + self.input_topic,
                                        'image_stylized:=' + self.output_topic))
        self.log_path = self._node_process.log_path

        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node('client_' + self.name)
        self.outputs = queue.Queue()
        self.diagnostics = queue.Queue()
        self.publisher = self.node.create_publisher(Image, self.input_topic, 10)
        if subscribe_output:
            self.node.create_subscription(
                Image, self.output_topic, self.outputs.put,
                QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self._spinner = Spinner(self.node)
        self._clients = {}
        self._stamps = itertools.count(1)
        try:
            self._node_process.wait_for_service(self._client(ListStyles, 'list_styles'),
                                                timeout=ready_timeout)
        except RuntimeError:
            self.close()
            raise

    @property
    def process(self):
        """The node's subprocess.Popen."""
        return self._node_process.process

    def _on_diagnostics(self, array):
        for status in array.status:
            if status.hardware_id == '/' + self.name:
                values = dict((kv.key, kv.value) for kv in status.values)
                values.update(level=ord(status.level), message=status.message)
                self.diagnostics.put(values)

    def _client(self, srv_type, service):
        key = (srv_type, service)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, '/%s/%s' % (self.name,
                                                                               service))
        return self._clients[key]

    def call(self, srv_type, service, request, timeout=60.0):
        return call_service(self._client(srv_type, service), request, timeout)

    def set_style(self, style='', blend_styles=(), blend_weights=(), strength=-1.0):
        return self.call(SetStyle, 'set_style', SetStyle.Request(
            style=style, blend_styles=list(blend_styles),
            blend_weights=[float(w) for w in blend_weights], strength=float(strength)))

    def list_styles(self):
        return self.call(ListStyles, 'list_styles', ListStyles.Request())

    def set_parameter(self, name, value):
        """Set one parameter through the node's service; return its SetParametersResult."""
        message = Parameter(name, value=value).to_parameter_msg()
        response = self.call(SetParameters, 'set_parameters',
                             SetParameters.Request(parameters=[message]))
        return response.results[0]

    def get_parameter(self, name):
        response = self.call(GetParameters, 'get_parameters', GetParameters.Request(names=[name]))
        return Parameter.from_parameter_msg(
            ParameterMsg(name=name, value=response.values[0])).value

    def next_stamp(self):
        return next(self._stamps) * 1000003

    def publish(self, rgb, encoding='rgb8', stamp=None, frame_id='camera'):
        stamp = self.next_stamp() if stamp is None else stamp
        self.publisher.publish(image_msg(rgb, stamp, frame_id, encoding))
        return stamp

    def roundtrip(self, rgb, encoding='rgb8', frame_id='camera', timeout=30.0, msg=None):
        """Publish a frame (again, until matched: the input is best effort) and return the
        output carrying its stamp."""
        stamp = self.next_stamp()
        if msg is None:
            msg = image_msg(rgb, stamp, frame_id, encoding)
        else:
            msg.header.stamp = Time(sec=stamp // 10 ** 9, nanosec=stamp % 10 ** 9)
        deadline = _Deadline(timeout)
        while not deadline.passed():
            self.publisher.publish(msg)
            try:
                out = self.outputs.get(timeout=0.5)
            except queue.Empty:
                continue
            while ros_stamp_ns(out.header) != stamp:
                try:
                    out = self.outputs.get(timeout=0.5)
                except queue.Empty:
                    break
            if ros_stamp_ns(out.header) == stamp:
                return out
        raise AssertionError('no stylized frame for stamp %d; node log:\n%s' % (stamp, self.log()))

    def stylized(self, rgb, **kwargs):
        return image_msg_to_rgb(self.roundtrip(rgb, **kwargs))

    def drain(self):
        while True:
            try:
                self.outputs.get_nowait()
            except queue.Empty:
                return

    def next_diagnostics(self, predicate=lambda values: True, timeout=30.0):
        deadline = _Deadline(timeout)
        while not deadline.passed():
            try:
                values = self.diagnostics.get(timeout=deadline.left())
            except queue.Empty:
                break
            if predicate(values):
                return values
        raise AssertionError('no matching diagnostics; node log:\n' + self.log())

    def publish_until(self, msg, predicate, timeout=30.0, publisher=None):
        """Publish msg (on publisher, default the raw input) once per diagnostics message until
        the diagnostics satisfy predicate (the input is best effort, so one publication may be
        lost)."""
        deadline = _Deadline(timeout)
        while not deadline.passed():
            (publisher or self.publisher).publish(msg)
            try:
                values = self.diagnostics.get(timeout=min(2.0, deadline.left()))
            except queue.Empty:
                continue
            if predicate(values):
                return values
        raise AssertionError('diagnostics never matched; node log:\n' + self.log())

    def log(self):
        return self._node_process.log_tail(6000)

    def memory_mb(self, key='VmRSS'):
        """The node's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
        return self._node_process.memory_mb(key)

    def stop(self, sig=signal.SIGINT, timeout=30.0):
        """Signal the node and return its exit code."""
        return self._node_process.stop(sig, timeout)

    def close(self):
        code = self.stop()
        self._spinner.close()
        return code


class _Deadline(object):
    def __init__(self, seconds):
        import time
        self._time = time.monotonic
        self._end = self._time() + seconds

    def left(self):
        return max(0.0, self._end - self._time())

    def passed(self):
        return self.left() <= 0.0
