"""The stylizer node's parameters: one table (name, default, limits, description) and one
validator, so start-up, `ros2 param set` and ~/set_style share every rule.

Plain Python (no rclpy): the node builds its descriptors from SPECS.
"""
import numbers
import os

from style_transfer_ros.error_text import echo
from style_transfer_ros.image_conversion import OUTPUT_ENCODINGS
from style_transfer_ros.stylizer import MAX_PROCESSING_SIZE, OUTPUT_SIZES, checked_processing_size


class Spec(object):
    """One parameter: kind is bool, integer, double, string, string_array or double_array.
    limits: (low, high) for numbers, the allowed values for strings. Arrays are dynamically
    typed (the CLI types '[]' as a bool array and '[1, 1]' as integers); the validator
    decides."""

    def __init__(self, name, default, kind, description, limits=None, read_only=False):
        self.name = name
        self.default = default
        self.kind = kind
        self.description = description
        self.limits = limits
        self.read_only = read_only


SPECS = (
    Spec('model_dirs', [], 'string_array',
         "Folders scanned for *.tflite models with a .json sidecar; empty = the package's "
         'models/ folder'),
    Spec('style', 'starry_night', 'string',
         'Catalog name ("starry_night"), multi-style model ("classics"), one style of it '
         '("classics/the_scream"), or a model path when allow_model_paths'),
    Spec('blend_weights', [], 'double_array',
         'Weights of the styles of a multi-style model, in its style_names order; empty = '
         'equal blend. Reset when style changes to a model they do not fit'),
    Spec('strength', 1.0, 'double', '0 = original frame, 1 = fully stylized', (0.0, 1.0)),
    Spec('num_threads', 0, 'integer',
         'TFLite inference threads; 0 = cores - 1 (at least 1), leaving a core for the camera '
         'driver and DDS', (0, 64)),
    Spec('processing_size', 640, 'integer',
         'Longest side the model sees, in pixels (rounded to a multiple of 4); 0 = the '
         "frame's size (or a fixed-size model's own size)", (0, MAX_PROCESSING_SIZE)),
    Spec('output_size', 'input', 'string',
         "'input' = publish at the camera's size, 'processing' = at processing_size",
         OUTPUT_SIZES),
    Spec('output_encoding', 'rgb8', 'string', 'Encoding of image_stylized', OUTPUT_ENCODINGS),
    Spec('jpeg_quality', 80, 'integer', 'JPEG quality of image_stylized/compressed', (1, 100)),
    Spec('input_transport', 'raw', 'string',
         "'raw' = subscribe to image (sensor_msgs/Image), 'compressed' = to image/compressed "
         '(sensor_msgs/CompressedImage); set at start-up', ('raw', 'compressed'),
         read_only=True),
    Spec('max_input_pixels', 4096 * 4096, 'integer',
         'Frames with more pixels are dropped with a warning (they would cost memory the '
         'board may not have)', (1, 2 ** 31 - 1)),
    Spec('qos_depth', 1, 'integer',
         'Depth of the best-effort image subscription (set at start-up)', (1, 100),
         read_only=True),
    Spec('diagnostics_period', 1.0, 'double', 'Seconds between /diagnostics messages',
         (0.05, 3600.0)),
    Spec('input_timeout', 3.0, 'double',
         'Seconds without an input frame before /diagnostics warns', (0.1, 3600.0)),
    Spec('allow_model_paths', False, 'bool',
         'Allow style to be a .tflite path (it must lie inside model_dirs)'),
    Spec('lazy', True, 'bool', 'Skip inference while nobody subscribes to the output'),
)
SPEC_BY_NAME = dict((spec.name, spec) for spec in SPECS)


def cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def auto_threads():
    return max(1, cores() - 1)


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


def model_directories(model_dirs):
    """The folders a model_dirs value means: its entries with ~ expanded, or the package's
    models/ when it names none."""
    return [os.path.expanduser(d) for d in model_dirs if d] or [default_model_dir()]


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate(spec, value):
    """Return value in its canonical form or raise ValueError saying what is wrong."""
    kind, limits = spec.kind, spec.limits
    if kind in ('string_array', 'double_array'):
        if value is None:
            return []
        if not isinstance(value, (list, tuple)) and type(value).__name__ != 'array':
            raise ValueError('%s must be a list, got %s' % (spec.name, echo(value)))
        items = list(value)
        wanted = str if kind == 'string_array' else numbers.Real
        if not all(isinstance(v, wanted) and not isinstance(v, bool) for v in items):
            raise ValueError('%s must be a list of %s, got %s' % (
                spec.name, 'strings' if kind == 'string_array' else 'numbers', echo(value)))
        # The weights' own rule (finite, non-negative, ...) is the catalog's normalized_weights.
        return [float(v) for v in items] if kind == 'double_array' else items
    if kind == 'bool':
        if not isinstance(value, bool):
            raise ValueError('%s must be true or false, got %s' % (spec.name, echo(value)))
        return value
    if kind == 'string':
        if not isinstance(value, str):
            raise ValueError('%s must be a string, got %s' % (spec.name, echo(value)))
        if limits is not None and value not in limits:
            raise ValueError('%s must be one of %s, not %s'
                             % (spec.name, ', '.join(limits), echo(value)))
        return value
    if not _is_number(value) or (kind == 'integer' and not isinstance(value, numbers.Integral)):
        raise ValueError('%s must be %s, got %s' % (
            spec.name, 'an integer' if kind == 'integer' else 'a number', echo(value)))
    if spec.name == 'processing_size':  # the Stylizer's rule; limits only describe it to ROS
        return checked_processing_size(value)
    if not limits[0] <= value <= limits[1]:  # also refuses NaN
        raise ValueError('%s must be within [%s, %s], got %s'
                         % (spec.name, limits[0], limits[1], echo(value)))
    return int(value) if kind == 'integer' else float(value)


class Settings(object):
    """A validated, complete set of parameter values; replaced as a whole, never mutated.
    Values are attributes (settings.lazy), so the frame path reads them for free."""

    def __init__(self, values):
        self.values = {}
        for spec in SPECS:
            self.values[spec.name] = _validate(spec, values.get(spec.name, spec.default))
        self.__dict__.update(self.values)
        self.threads = self.num_threads or auto_threads()  # 0 = automatic

    def updated(self, changes):
        """A new Settings with changes applied; raises ValueError (nothing changes)."""
        unknown = [name for name in changes if name not in SPEC_BY_NAME]
        if unknown:
            raise ValueError('unknown parameter(s): %s' % ', '.join(unknown))
        values = dict(self.values)
        values.update(changes)
        return Settings(values)
