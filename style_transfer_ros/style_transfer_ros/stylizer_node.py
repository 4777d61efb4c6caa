"""ROS 2 node: stylize a camera topic with a swappable TFLite style model.

Frames arrive on ``image`` (best effort; or ``image/compressed``); a worker thread paints
the newest (frame_path) and publishes ``image_stylized`` (reliable) with the same header, and
``image_stylized/compressed`` (JPEG) while someone subscribes to it.

Every state change is a parameter change: ``ros2 param set``, start-up values and
``~/set_style`` (which translates its request into one atomic parameter update) all pass
through one validator (node_parameters) and one loader, and a refused change changes nothing.
A new model is loaded beside the running one and swapped in with one assignment.

Everything but inference runs on a SingleThreadedExecutor: rclpy's MultiThreadedExecutor
re-queues handlers that wait in its pool and spins a core doing it, which takes the CPU that
inference and DDS need. Loading a model on the executor (10-60 ms) pauses the intake of
frames, not the painting.

Runs on rclpy from Humble on (Python 3.6 on the Jetson Nano container), so only APIs and
syntax that exist there are used.
"""

import signal
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from style_transfer_interfaces.msg import StyleInfo
from style_transfer_interfaces.srv import ListStyles, SetStyle

from style_transfer_ros import frame_statistics
from style_transfer_ros.catalog import Catalog, SelectionError
from style_transfer_ros.frame_path import ActiveStyle, FramePath, image_output, jpeg_output
from style_transfer_ros.node_parameters import SPECS, Settings, cores, model_directories
from style_transfer_ros.model_runtime import runtime_target
from style_transfer_ros.stylizer import ModelError, Stylizer, give_back_freed_memory

LOG_PERIOD = 10.0  # seconds between the node's one-line rate reports
_PARAMETER_TYPES = {
    'bool': ParameterType.PARAMETER_BOOL, 'integer': ParameterType.PARAMETER_INTEGER,
    'double': ParameterType.PARAMETER_DOUBLE, 'string': ParameterType.PARAMETER_STRING}
_LEVELS = {frame_statistics.OK: DiagnosticStatus.OK, frame_statistics.WARN: DiagnosticStatus.WARN,
           frame_statistics.ERROR: DiagnosticStatus.ERROR}


def _descriptor(spec):
    """The ParameterDescriptor of a node_parameters.Spec (arrays are dynamically typed)."""
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.kind.endswith('_array'):
        descriptor.dynamic_typing = True
        return descriptor
    descriptor.type = _PARAMETER_TYPES[spec.kind]
    if spec.kind == 'integer':
        descriptor.integer_range = [IntegerRange(
            from_value=spec.limits[0], to_value=spec.limits[1], step=1)]
    elif spec.kind == 'double':
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=spec.limits[0], to_value=spec.limits[1])]
    elif spec.limits:
        descriptor.additional_constraints = 'one of: ' + ', '.join(spec.limits)
    return descriptor


def _float32_clean(value):
    """A float32 from a service request as the decimal it was typed as (0.8, not 0.80000001)."""
    return float('%.7g' % value)


class StylizerNode(Node):

    def __init__(self, **kwargs):
        super(StylizerNode, self).__init__('style_transfer', **kwargs)
        self._frames = None  # destroy_node may come before it exists (a failed start-up)
        self._settings = self._declare_parameters()
        self._catalog = Catalog(self._model_dirs(self._settings), target=runtime_target())
        for problem in self._catalog.problems:
            self.get_logger().warning('model catalog: %s' % problem)
        self._active = self._load_active(self._settings, self._catalog)
        self._warn_about_threads(self._settings)
        self._statistics = frame_statistics.FrameStatistics()
        self._last_log = time.monotonic()
        self._last_level = frame_statistics.OK
        self._wire()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._frames.start(lambda: (self._settings, self._active))
        self.get_logger().info('painting %s on %s, %d inference thread(s)%s, input %s' % (
            self._active.describe(), self._active.stylizer.backend, self._settings.threads,
            ' (auto: %d cores - 1)' % cores() if not self._settings.num_threads else '',
            self._input.topic_name))

    # ---------------------------------------------------------------- set-up
    def _declare_parameters(self):
        """Declare every parameter from node_parameters.SPECS; validate the start-up values."""
        for spec in SPECS:
            default = None if spec.kind.endswith('_array') else spec.default
            self.declare_parameter(spec.name, default, _descriptor(spec))
        return Settings(dict((spec.name, self.get_parameter(spec.name).value) for spec in SPECS))

    def _wire(self):
        """Topics, services and timers; everything here runs on the one executor thread."""
        self._image_output = image_output(self._advertise_output())
        # image_transport's naming: <base topic, after remapping>/compressed.
        jpeg = jpeg_output(self.create_publisher(
            CompressedImage, self._image_output.publisher.topic_name + '/compressed',
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)))
        self._compressed_input = self._settings.input_transport == 'compressed'
        # Gives back what a huge frame left behind (the frame path says when).
        release_buffers = self.create_guard_condition(self._on_release_buffers)
        self._frames = FramePath(
            [self._image_output, jpeg], self._compressed_input, self._statistics,
            lambda: self.get_clock().now().nanoseconds, self.get_logger(),
            release_buffers.trigger, lambda: not self.context.ok())
        self._input = self._subscribe_input()
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_service(SetStyle, '~/set_style', self._on_set_style)
        self.create_service(ListStyles, '~/list_styles', self._on_list_styles)
        self._diagnostics_timer = self.create_timer(self._settings.diagnostics_period,
                                                    self._publish_diagnostics)
        # Clears blend_weights after a style change they no longer fit (see _load_active).
        self._clear_weights = self.create_guard_condition(self._on_clear_weights)

    def _advertise_output(self):
        return self.create_publisher(
            Image, 'image_stylized', QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def _subscribe_input(self):
        sensor_qos = QoSProfile(depth=self._settings.qos_depth,
                                reliability=ReliabilityPolicy.BEST_EFFORT,
                                history=HistoryPolicy.KEEP_LAST)
        if self._compressed_input:
            return self.create_subscription(
                CompressedImage, self.resolve_topic_name('image') + '/compressed',
                self._frames.offer, sensor_qos)
        # Serialized: the worker reads the pixels in place (serialized_image).
        return self.create_subscription(Image, 'image', self._frames.offer, sensor_qos,
                                        raw=True)

    def _model_dirs(self, settings):
        return model_directories(settings.model_dirs)

    def _warn_about_threads(self, settings):
        if settings.threads >= cores():
            self.get_logger().warning(
                'num_threads %d >= %d cores: inference will compete with the camera driver and '
                'DDS for every core and stall; 0 picks cores - 1' % (settings.threads, cores()))

    # ---------------------------------------------------------------- state changes
    def _load_active(self, settings, catalog):
        """Resolve and load the style settings ask for, beside the running one; raise on any
        problem (before touching the running stylizer)."""
        selection = catalog.resolve(settings.style, blend_weights=settings.blend_weights,
                                    allow_model_paths=settings.allow_model_paths)
        current = getattr(self, '_active', None)
        if (current is not None and current.stylizer.model_path == selection.model_path
                and current.stylizer.num_threads == settings.threads):
            stylizer = current.stylizer  # same file: only weights, strength or sizes change
        else:
            stylizer = Stylizer(selection.model_path, num_threads=settings.threads)
        active = ActiveStyle(stylizer, selection, settings.strength)  # checks the weights
        stylizer.processing_size = settings.processing_size  # validated by Settings
        stylizer.output_size = settings.output_size
        return active

    def _on_set_parameters(self, parameters):
        """The one path for every change: validate all of it, load what it needs, then swap;
        on any error nothing changes."""
        changes = dict((p.name, p.value) for p in parameters)
        try:
            settings = self._settings.updated(changes)
            catalog = self._catalog
            if 'model_dirs' in changes:
                catalog = Catalog(self._model_dirs(settings), target=runtime_target())
            try:
                active = self._load_active(settings, catalog)
            except SelectionError:
                # Setting style alone always works: weights that do not fit it are reset.
                if 'style' not in changes or 'blend_weights' in changes \
                        or not settings.blend_weights:
                    raise
                settings = settings.updated({'blend_weights': []})
                active = self._load_active(settings, catalog)
                self._clear_weights.trigger()  # the parameter follows once this returns
        except (SelectionError, ModelError, ValueError) as error:
            self.get_logger().warning('parameter change rejected: %s' % error)
            return SetParametersResult(successful=False, reason=str(error))
        if settings.threads != self._settings.threads:
            self._warn_about_threads(settings)
        previous, self._settings, self._catalog, self._active = (
            self._active, settings, catalog, active)
        if previous.describe() != active.describe():
            self.get_logger().info('now painting %s' % active.describe())
        if 'diagnostics_period' in changes:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(settings.diagnostics_period,
                                                        self._publish_diagnostics)
        return SetParametersResult(successful=True)

    def _on_release_buffers(self):
        """A new subscription and output publisher, between two frames: DDS readers and
        writers size their sample buffers for the largest sample and keep them while they
        live. Then the C heap's freed pages go back to the system."""
        self.destroy_subscription(self._input)
        self._input = self._subscribe_input()
        with self._frames.painting:
            self.destroy_publisher(self._image_output.publisher)
            self._image_output.publisher = self._advertise_output()
        give_back_freed_memory()

    def _on_clear_weights(self):
        if self._settings.blend_weights == [] and self.get_parameter('blend_weights').value:
            self.set_parameters([Parameter('blend_weights', Parameter.Type.DOUBLE_ARRAY, [])])

    # ---------------------------------------------------------------- services
    def _on_set_style(self, request, response):
        """Translate the request into one atomic parameter update."""
        try:
            result = self.set_parameters_atomically(self._style_parameters(request))
        except (SelectionError, ValueError) as error:
            self.get_logger().warning('set_style refused: %s' % error)
            result = SetParametersResult(successful=False, reason=str(error))
        response.success = result.successful
        response.active_style = self._active.describe()
        response.message = ('now painting ' + response.active_style if result.successful
                            else result.reason)
        return response

    def _style_parameters(self, request):
        """The parameters a SetStyle request asks for (a blend of named styles becomes its
        model's name and full weight vector, so the parameters select it again)."""
        parameters = []
        if not request.strength < 0:  # negative keeps the strength; NaN is refused later
            parameters.append(Parameter('strength', Parameter.Type.DOUBLE,
                                        _float32_clean(request.strength)))
        weights = [_float32_clean(w) for w in request.blend_weights]
        style = request.style
        if request.blend_styles:
            selection = self._catalog.resolve(
                style, blend_styles=list(request.blend_styles), blend_weights=weights,
                allow_model_paths=self._settings.allow_model_paths)
            style, weights = selection.entry.name, list(selection.weights)
        elif not style and weights:
            raise SelectionError('blend_weights given without style or blend_styles')
        if style:
            parameters += [Parameter('style', Parameter.Type.STRING, style),
                           Parameter('blend_weights', Parameter.Type.DOUBLE_ARRAY, weights)]
        if not parameters:
            raise SelectionError('empty request: give a style, blend_styles or a strength')
        return parameters

    def _on_list_styles(self, request, response):
        """Rescan model_dirs first, so models added while the node runs are listed (and
        selectable); the problems the previous scan did not have are logged."""
        entry = self._active.selection.entry
        catalog = self._catalog.rescanned(keep=entry.name if entry else None)
        for problem in catalog.problems:
            if problem not in self._catalog.problems:
                self.get_logger().warning('model catalog: %s' % problem)
        self._catalog = catalog
        for entry in self._catalog.entries.values():
            response.styles.append(StyleInfo(
                name=entry.name, model_file=entry.model_path, description=entry.description,
                painting=entry.painting, artist=entry.artist, licence=entry.licence,
                quantization=entry.quantization, style_names=list(entry.style_names),
                verified_runtimes=[str(r) for r in entry.metadata.get('verified_runtimes', [])]))
        response.active_style = self._active.describe()
        response.runtime = self._active.stylizer.backend
        return response

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self):
        active, settings = self._active, self._settings
        subscribers = sum(self._frames.subscribers())
        report = frame_statistics.report(
            self._statistics, settings.input_timeout, settings.lazy and not subscribers,
            self._input.topic_name)
        values = report.values + [
            ('active_style', active.describe()), ('model_file', active.stylizer.model_path),
            ('runtime', active.stylizer.backend), ('threads', str(active.stylizer.num_threads)),
            ('processing_size', str(settings.processing_size)), ('subscribers', str(subscribers))]
        status = DiagnosticStatus(
            level=_LEVELS[report.level], name='%s: stylizer' % self.get_name(),
            hardware_id=self.get_fully_qualified_name(), message=report.message,
            values=[KeyValue(key=k, value=v) for k, v in values])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)
        now = time.monotonic()
        if now - self._last_log >= LOG_PERIOD or report.level != self._last_level:
            self._last_log, self._last_level = now, report.level
            line = report.summary(active.describe())
            if report.level == frame_statistics.OK:  # rclpy: one severity per call site
                self.get_logger().info(line)
            else:
                self.get_logger().warning(line)

    def destroy_node(self):
        if self._frames is not None:
            self._frames.stop()
        return super(StylizerNode, self).destroy_node()


def _ignore_stop_signals():
    """From here on the node is stopping: `ros2 launch` and the terminal both send SIGINT on
    Ctrl-C, and a second signal must not interrupt destroy_node with a KeyboardInterrupt."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = StylizerNode()
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as error:  # every start-up problem: one line, exit 1
            rclpy.logging.get_logger('style_transfer').fatal('cannot start: %s' % error)
            raise SystemExit(1)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # A signal shut rclpy down while spin was building its wait set (RCLError: the
        # context is not valid): a stop like any other.
    finally:
        _ignore_stop_signals()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        _ignore_stop_signals()  # try_shutdown put back the handlers from before rclpy.init


if __name__ == '__main__':
    main()
