"""ROS 2 node: stylize a camera topic with a swappable TFLite style model.

Frames arrive on ``image`` (best effort, depth 1 by default), the newest one waits in a
one-slot mailbox, and a worker thread stylizes it and publishes ``image_stylized``
(reliable) with the same header. A frame that arrives while the model is busy replaces the
waiting one and is counted as dropped, so no backlog can build up. Styles change through
``~/set_style`` or the ``style`` parameter; a new model is loaded and validated beside the
running one and swapped in with one assignment, so a failed change leaves the old style
running.

Runs on rclpy from Humble on (Python 3.6 on the Jetson Nano container), so only APIs and
syntax that exist there are used.
"""

import collections
import math
import os
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image

from style_transfer_interfaces.msg import StyleInfo
from style_transfer_interfaces.srv import ListStyles, SetStyle

from style_transfer_ros.catalog import Catalog, SelectionError
from style_transfer_ros.image_conversion import (ImageConversionError, image_msg_to_rgb,
                                                 rgb_to_image_msg)
from style_transfer_ros.stylizer import ModelError, Stylizer, runtime_target

OUTPUT_ENCODINGS = ('rgb8', 'bgr8')
OUTPUT_SIZES = ('input', 'processing')
# Parameters whose change needs a (possibly) different model or interpreter.
MODEL_PARAMETERS = ('style', 'blend_weights', 'num_threads', 'model_dirs', 'allow_model_paths')


def default_model_dir():
    """The installed package's models/, or the source tree's when run from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = os.path.join(get_package_share_directory('style_transfer_ros'), 'models')
        if os.path.isdir(installed):
            return installed
    except (ImportError, LookupError, ValueError):
        pass
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'models')


def _descriptor(description, type_, read_only=False, **ranges):
    descriptor = ParameterDescriptor(description=description, type=type_, read_only=read_only)
    if 'floating' in ranges:
        low, high = ranges['floating']
        descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
    if 'integer' in ranges:
        low, high = ranges['integer']
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    return descriptor


class ActiveStyle(object):
    """What the worker paints with; replaced as a whole, never mutated."""

    def __init__(self, stylizer, selection, strength):
        self.stylizer = stylizer
        self.selection = selection
        self.strength = strength
        # A multi-style model chosen by path has no catalog entry to say its styles: blend
        # them equally.
        self.weights = selection.weights
        if not self.weights and stylizer.num_styles:
            self.weights = [1.0 / stylizer.num_styles] * stylizer.num_styles


class RateWindow(object):
    """Counts events and keeps recent durations for fps / mean / p95 figures."""

    def __init__(self, size=200):
        self.count = 0
        self.samples = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, sample=None):
        with self._lock:
            self.count += 1
            if sample is not None:
                self.samples.append(sample)

    def take(self):
        """Return (count, samples) since the last take and reset."""
        with self._lock:
            count, samples = self.count, list(self.samples)
            self.count = 0
            self.samples.clear()
        return count, samples


def _mean_p95(samples):
    if not samples:
        return float('nan'), float('nan')
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(math.ceil(0.95 * len(ordered))) - 1)]
    return sum(ordered) / len(ordered), p95


class StylizerNode(Node):

    def __init__(self, **kwargs):
        super(StylizerNode, self).__init__('style_transfer', **kwargs)
        self._mailbox = None  # the newest frame not yet taken by the worker
        self._mailbox_cond = threading.Condition()
        self._running = True
        self._worker = threading.Thread(target=self._work, name='stylizer', daemon=True)
        self._declare_parameters()
        self._dropped = 0
        self._bad_frames = 0
        self._frames_in = RateWindow()
        self._frames_out = RateWindow()
        self._inference_ms = RateWindow()
        self._latency_ms = RateWindow()
        self._stats_since = time.monotonic()
        self._model_lock = threading.Lock()  # one model load at a time
        self._service_update = False

        self._catalog = Catalog(self._model_dirs(), target=runtime_target())
        for problem in self._catalog.problems:
            self.get_logger().warn('model catalog: %s' % problem)
        self._active = self._load_active(
            style=self._param('style'), blend_weights=self._param('blend_weights'),
            strength=self._param('strength'), num_threads=self._param('num_threads'),
            catalog=self._catalog, allow_paths=self._param('allow_model_paths'))
        self._apply_stylizer_sizes(self._active.stylizer)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        sensor_qos = QoSProfile(depth=self._param('qos_depth'),
                                reliability=ReliabilityPolicy.BEST_EFFORT,
                                history=HistoryPolicy.KEEP_LAST)
        self._publisher = self.create_publisher(
            Image, 'image_stylized',
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._subscription = self.create_subscription(
            Image, 'image', self._on_image, sensor_qos)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(SetStyle, '~/set_style', self._on_set_style, callback_group=services)
        self.create_service(ListStyles, '~/list_styles', self._on_list_styles,
                            callback_group=services)
        self._diagnostics_timer = self.create_timer(
            self._param('diagnostics_period'), self._publish_diagnostics)
        self._last_log = 0.0
        self._last_warning = -1e9
        self._warnings_held = 0
        self._worker.start()
        self.get_logger().info('painting %s on %s, %d thread(s)' % (
            self._active.selection.description, self._active.stylizer.backend,
            self._active.stylizer.num_threads))

    # ---------------------------------------------------------------- parameters
    def _declare_parameters(self):
        string, integer = ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER
        double, boolean = ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_BOOL
        declared = [
            ('model_dirs', Parameter.Type.STRING_ARRAY, _descriptor(
                'Folders scanned for *.tflite models with a .json sidecar; empty = the '
                "package's models/ folder", ParameterType.PARAMETER_STRING_ARRAY)),
            ('style', 'starry_night', _descriptor(
                'Catalog name ("starry_night"), multi-style model ("classics"), one style of '
                'it ("classics/the_scream"), or a model path when allow_model_paths', string)),
            ('blend_weights', Parameter.Type.DOUBLE_ARRAY, _descriptor(
                'Weights of the styles of a multi-style model, in its style_names order; '
                'empty = equal blend', ParameterType.PARAMETER_DOUBLE_ARRAY)),
            ('strength', 1.0, _descriptor(
                '0 = original frame, 1 = fully stylized', double, floating=(0.0, 1.0))),
            ('num_threads', 2, _descriptor(
                'TFLite interpreter threads', integer, integer=(1, 64))),
            ('processing_size', 0, _descriptor(
                'Longest side the model sees, in pixels (rounded to a multiple of 4); '
                "0 = the frame's size (or a fixed-size model's own size)",
                integer, integer=(0, 4096))),
            ('output_size', 'input', _descriptor(
                "'input' = publish at the camera's size, 'processing' = at processing_size",
                string)),
            ('output_encoding', 'rgb8', _descriptor('rgb8 or bgr8', string)),
            ('qos_depth', 1, _descriptor(
                'Depth of the best-effort image subscription (set at start-up)', integer,
                read_only=True, integer=(1, 100))),
            ('diagnostics_period', 1.0, _descriptor(
                'Seconds between /diagnostics messages', double, floating=(0.05, 3600.0))),
            ('allow_model_paths', False, _descriptor(
                'Allow set_style with a .tflite path (it must lie inside model_dirs)',
                boolean)),
            ('lazy', True, _descriptor(
                'Skip inference while nobody subscribes to image_stylized', boolean)),
        ]
        for name, value, descriptor in declared:
            self.declare_parameter(name, value, descriptor)

    def _param(self, name):
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:  # array parameters declared by type only
            return []
        if isinstance(value, (list, tuple)) or type(value).__name__ == 'array':
            return list(value)
        return value

    def _model_dirs(self, dirs=None):
        dirs = self._param('model_dirs') if dirs is None else dirs
        return [os.path.expanduser(d) for d in dirs if d] or [default_model_dir()]

    def _load_active(self, style, blend_weights, strength, num_threads, catalog, allow_paths,
                     blend_styles=()):
        """Resolve and load a style without touching the running one; raise on any problem."""
        selection = catalog.resolve(style, blend_styles=blend_styles,
                                    blend_weights=blend_weights, allow_model_paths=allow_paths)
        current = getattr(self, '_active', None)
        if (current is not None and current.stylizer.model_path == selection.model_path
                and current.stylizer.num_threads == num_threads):
            stylizer = current.stylizer  # same file: only weights or strength change
        else:
            stylizer = Stylizer(selection.model_path, num_threads=num_threads)
        if stylizer.num_styles == 0 and selection.weights:
            raise SelectionError('%s is a single-style model: blend weights do not apply'
                                 % selection.description)
        return ActiveStyle(stylizer, selection, strength)

    def _apply_stylizer_sizes(self, stylizer, processing_size=None, output_size=None):
        stylizer.processing_size = (self._param('processing_size')
                                    if processing_size is None else processing_size)
        stylizer.output_size = self._param('output_size') if output_size is None else output_size

    def _on_set_parameters(self, parameters):
        if self._service_update:
            return SetParametersResult(successful=True)
        changed = dict((p.name, p.value) for p in parameters)
        try:
            self._apply_parameters(changed)
        except (SelectionError, ModelError, ValueError) as error:
            self.get_logger().warn('parameter change rejected: %s' % error)
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changed):
        def new(name):
            value = changed[name] if name in changed else self._param(name)
            if value is None:  # an array parameter set to nothing
                return []
            return list(value) if name in ('model_dirs', 'blend_weights') else value

        if new('output_encoding') not in OUTPUT_ENCODINGS:
            raise ValueError('output_encoding must be one of %s, not %r'
                             % (', '.join(OUTPUT_ENCODINGS), new('output_encoding')))
        if new('output_size') not in OUTPUT_SIZES:
            raise ValueError('output_size must be one of %s, not %r'
                             % (', '.join(OUTPUT_SIZES), new('output_size')))
        if any(name in changed for name in MODEL_PARAMETERS):
            catalog = self._catalog
            if 'model_dirs' in changed:
                catalog = Catalog(self._model_dirs(new('model_dirs')), target=runtime_target())
            with self._model_lock:
                active = self._load_active(
                    style=new('style'), blend_weights=new('blend_weights'),
                    strength=new('strength'), num_threads=new('num_threads'),
                    catalog=catalog, allow_paths=new('allow_model_paths'))
                self._apply_stylizer_sizes(active.stylizer, new('processing_size'),
                                           new('output_size'))
                self._catalog = catalog
                self._active = active
            self.get_logger().info('now painting %s' % self._describe(active))
        else:
            if 'processing_size' in changed or 'output_size' in changed:
                self._apply_stylizer_sizes(self._active.stylizer, new('processing_size'),
                                           new('output_size'))
            if 'strength' in changed:
                active = self._active
                self._active = ActiveStyle(active.stylizer, active.selection, new('strength'))
        if 'diagnostics_period' in changed:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(changed['diagnostics_period'],
                                                        self._publish_diagnostics)

    # ---------------------------------------------------------------- services
    def _on_set_style(self, request, response):
        strength = self._active.strength if request.strength < 0 else float(request.strength)
        try:
            if not (0.0 <= strength <= 1.0) or math.isnan(strength):
                raise ValueError('strength must be within [0, 1], got %r' % request.strength)
            if request.blend_weights and not request.blend_styles and not request.style:
                raise SelectionError('blend_weights given without style or blend_styles')
            with self._model_lock:
                active = self._load_active(
                    style=request.style, blend_styles=list(request.blend_styles),
                    blend_weights=[float(w) for w in request.blend_weights],
                    strength=strength, num_threads=self._active.stylizer.num_threads,
                    catalog=self._catalog, allow_paths=self._param('allow_model_paths'))
                self._apply_stylizer_sizes(active.stylizer)
                self._active = active
        except (SelectionError, ModelError, ValueError) as error:
            response.success = False
            response.message = str(error)
            response.active_style = self._describe(self._active)
            self.get_logger().warn('set_style failed, still painting %s: %s'
                                   % (response.active_style, error))
            return response
        # Record the selection in the parameters in a form that selects it again: as asked,
        # or, for a blend of named styles, as the model name plus its full weight vector.
        if request.style:
            style_parameter, weights_parameter = request.style, list(request.blend_weights)
        else:
            style_parameter = active.selection.entry.name
            weights_parameter = list(active.selection.weights)
        self._service_update = True
        try:
            self.set_parameters([
                Parameter('style', Parameter.Type.STRING, style_parameter),
                Parameter('blend_weights', Parameter.Type.DOUBLE_ARRAY,
                          [float(w) for w in weights_parameter]),
                Parameter('strength', Parameter.Type.DOUBLE, float(strength)),
            ])
        finally:
            self._service_update = False
        response.success = True
        response.active_style = self._describe(active)
        response.message = 'now painting ' + response.active_style
        self.get_logger().info(response.message)
        return response

    def _on_list_styles(self, request, response):
        for entry in self._catalog.entries.values():
            response.styles.append(StyleInfo(
                name=entry.name, model_file=entry.model_path, description=entry.description,
                painting=entry.painting, artist=entry.artist, licence=entry.licence,
                quantization=entry.quantization, style_names=list(entry.style_names),
                verified_runtimes=[str(r) for r in entry.metadata.get('verified_runtimes', [])]))
        response.active_style = self._describe(self._active)
        response.runtime = self._active.stylizer.backend
        return response

    @staticmethod
    def _describe(active):
        text = active.selection.description
        if active.strength < 1.0:
            text += ' @ strength %.2f' % active.strength
        return text

    # ---------------------------------------------------------------- frames
    def _on_image(self, msg):
        self._frames_in.add()
        with self._mailbox_cond:
            if self._mailbox is not None:
                self._dropped += 1
            self._mailbox = msg
            self._mailbox_cond.notify()

    def _next_frame(self):
        with self._mailbox_cond:
            while self._running and self._mailbox is None:
                self._mailbox_cond.wait()
            msg, self._mailbox = self._mailbox, None
        return msg

    def _work(self):
        while self._running:
            msg = self._next_frame()
            if msg is None:
                continue
            try:
                if self._param('lazy') and self._publisher.get_subscription_count() == 0:
                    continue
                self._process(msg)
            except ImageConversionError as error:
                self._bad_frames += 1
                self._warn_throttled('dropping bad frame: %s' % error)
            except Exception as error:  # keep painting whatever a frame or model throws
                if not self.context.ok():  # SIGINT/SIGTERM shut rclpy down under us
                    return
                self._bad_frames += 1
                self._warn_throttled('frame failed: %r' % (error,))

    def _warn_throttled(self, message, period=5.0):
        """Warn at most once per period, saying how many warnings were held back."""
        now = time.monotonic()
        if now - self._last_warning < period:
            self._warnings_held += 1
            return
        if self._warnings_held:
            message += ' (and %d more since the last warning)' % self._warnings_held
        self._last_warning, self._warnings_held = now, 0
        self.get_logger().warn(message)

    def _process(self, msg):
        rgb = image_msg_to_rgb(msg)
        active = self._active
        started = time.monotonic()
        stylized = active.stylizer.stylize(rgb, style_weights=active.weights,
                                           strength=active.strength)
        self._inference_ms.add(1000.0 * (time.monotonic() - started))
        out = rgb_to_image_msg(stylized, msg.header, self._param('output_encoding'))
        self._publisher.publish(out)
        stamp = msg.header.stamp
        if stamp.sec or stamp.nanosec:
            now = self.get_clock().now().nanoseconds
            self._latency_ms.add((now - (stamp.sec * 10 ** 9 + stamp.nanosec)) / 1e6)
        self._frames_out.add()

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self):
        now = time.monotonic()
        elapsed = max(now - self._stats_since, 1e-6)
        self._stats_since = now
        frames_in, _ = self._frames_in.take()
        frames_out, _ = self._frames_out.take()
        _, inference = self._inference_ms.take()
        _, latency = self._latency_ms.take()
        inference_mean, inference_p95 = _mean_p95(inference)
        latency_mean, latency_p95 = _mean_p95(latency)
        active = self._active
        values = [
            ('input_fps', '%.2f' % (frames_in / elapsed)),
            ('output_fps', '%.2f' % (frames_out / elapsed)),
            ('inference_ms_mean', '%.1f' % inference_mean),
            ('inference_ms_p95', '%.1f' % inference_p95),
            ('latency_ms_mean', '%.1f' % latency_mean),
            ('latency_ms_p95', '%.1f' % latency_p95),
            ('dropped_frames', str(self._dropped)),
            ('bad_frames', str(self._bad_frames)),
            ('active_style', self._describe(active)),
            ('model_file', active.stylizer.model_path),
            ('runtime', active.stylizer.backend),
            ('threads', str(active.stylizer.num_threads)),
            ('subscribers', str(self._publisher.get_subscription_count())),
        ]
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK, name='%s: stylizer' % self.get_name(),
            hardware_id=self.get_fully_qualified_name(),
            message='painting %s' % self._describe(active),
            values=[KeyValue(key=k, value=v) for k, v in values])
        if frames_in and not frames_out and self._publisher.get_subscription_count():
            status.level = DiagnosticStatus.WARN
            status.message = 'frames arrive but none are published'
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)
        if now - self._last_log >= 10.0 and (frames_in or frames_out):
            self._last_log = now
            self.get_logger().info(
                'in %.1f fps, out %.1f fps, inference %.1f ms (p95 %.1f), latency %.1f ms, '
                'dropped %d, %s' % (frames_in / elapsed, frames_out / elapsed, inference_mean,
                                    inference_p95, latency_mean, self._dropped,
                                    self._describe(active)))

    def destroy_node(self):
        with self._mailbox_cond:
            self._running = False
            self._mailbox_cond.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        return super(StylizerNode, self).destroy_node()


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = StylizerNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (SelectionError, ModelError, ValueError) as error:
        rclpy.logging.get_logger('style_transfer').fatal('cannot start: %s' % error)
        raise SystemExit(1)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
