"""Run a style transfer TFLite model on RGB frames.

Plain Python (no ROS) that works with Python 3.6 + tflite_runtime 2.5 /
tensorflow 2.6 on a Jetson Nano as well as with ai-edge-litert 2.x.
"""
import ctypes
import errno
import importlib
import numbers
import os
import re
import stat

import cv2
import numpy as np

from style_transfer_ros.model_contract import model_content_problem

RUNTIME_ENV = 'STYLE_TRANSFER_TFLITE_RUNTIME'
# (name, module to import); searched in this order.
RUNTIMES = (
    ('ai_edge_litert', 'ai_edge_litert.interpreter'),
    ('tflite_runtime', 'tflite_runtime.interpreter'),
    ('tensorflow.lite', 'tensorflow'),
)
SUPPORTED_DTYPES = (np.float32, np.uint8, np.int8)
OUTPUT_SIZES = ('input', 'processing')
# Networks downsample by 4 and upsample back, so sides must be multiples of 4.
SIZE_MULTIPLE = 4
MIN_PROCESSING_SIZE = 16
# tflite_runtime and TensorFlow releases older than this cannot load every op version that a
# current converter writes (TF 2.6 lacks TILE v3, for one); such runtimes get 'nano' models.
NANO_RUNTIME_BEFORE = (2, 10)
MAX_PROCESSING_SIZE = 4096
DRY_RUN_SIDE = 64
# A dynamic model gets a fresh interpreter when a frame is this many times smaller than the
# size it is allocated for.
RELEASE_FACTOR = 4

MAX_MODEL_BYTES = 256 * 2 ** 20  # far above any style network; bounds what a load reads
FILE_MISSING = 'file does not exist'
_FILE_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO'),
               (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a character device'),
               (stat.S_ISBLK, 'a block device'))

_runtime_cache = {}


def give_back_freed_memory():
    """Return the C heap's free pages to the system (glibc's malloc_trim; elsewhere nothing).
    glibc keeps what a huge frame's buffers freed for reuse, and small frames never reuse it."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    malloc_trim(0)


def regular_file_problem(path, max_bytes):
    """Why path is no regular file of at most max_bytes, or None. Only stat looks at it: a
    FIFO, socket or device is never opened (opening a FIFO waits for a writer)."""
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return FILE_MISSING
        return 'cannot stat it: {}'.format(error.strerror or error)
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for is_kind, name in _FILE_KINDS if is_kind(info.st_mode)),
                    'a special file')
        return 'is {}, not a regular file'.format(kind)
    if info.st_size > max_bytes:
        return 'is {} bytes, more than the {} bytes allowed'.format(info.st_size, max_bytes)
    return None


def find_runtime():
    """Return (name, version, Interpreter class) of the first TFLite runtime found.

    The environment variable STYLE_TRANSFER_TFLITE_RUNTIME may force one by name
    (ai_edge_litert, tflite_runtime or tensorflow.lite).
    """
    forced = os.environ.get(RUNTIME_ENV, '').strip()
    if forced not in _runtime_cache:
        _runtime_cache[forced] = _import_runtime(forced)
    return _runtime_cache[forced]


def runtime_target(name=None, version=None):
    """'nano' on old TensorFlow / tflite_runtime releases (Jetson Nano), else 'current'.

    Without arguments, for the runtime find_runtime() picks. Every ai_edge_litert release is
    current (its numbering restarted at 1.0).
    """
    if name is None:
        name, version, _ = find_runtime()
    if name == 'ai_edge_litert':
        return 'current'
    numbers = tuple(int(n) for n in re.findall(r'\d+', str(version))[:2])
    return 'nano' if numbers and numbers < NANO_RUNTIME_BEFORE else 'current'


def _import_runtime(forced):
    names = [name for name, _ in RUNTIMES]
    if forced == 'tensorflow':
        forced = 'tensorflow.lite'
    if forced and forced not in names:
        raise RuntimeError('{}={!r} is not a known TFLite runtime; use one of {}'.format(
            RUNTIME_ENV, forced, ', '.join(names)))
    tried = []
    for name, module_name in RUNTIMES:
        if forced and name != forced:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            tried.append('{} ({})'.format(module_name, error))
            continue
        interpreter_class = (module.lite.Interpreter if name == 'tensorflow.lite'
                             else module.Interpreter)
        package = importlib.import_module(module_name.split('.')[0])
        return name, getattr(package, '__version__', 'unknown'), interpreter_class
    raise RuntimeError('No TFLite runtime found; tried: {}. Install ai-edge-litert, '
                       'tflite-runtime or tensorflow.'.format('; '.join(tried)))


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and the reason."""

    def __init__(self, model_path, reason):
        super(ModelError, self).__init__('{}: {}'.format(model_path, reason))
        self.model_path = model_path
        self.reason = reason


def validate_style_weights(weights, num_styles):
    """Check style weights for a model with num_styles styles (0: single-style).

    Returns None for single-style models, else a float64 array summing to 1.
    Raises ValueError with the reason.
    """
    if num_styles == 0:
        if weights is not None and len(weights) > 0:
            raise ValueError('this is a single-style model; it takes no style weights')
        return None
    if weights is None:
        raise ValueError('this multi-style model needs {} style weights'.format(num_styles))
    try:
        values = np.asarray(weights, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError('style weights must be numbers, got {!r}'.format(weights))
    if values.size != num_styles:
        raise ValueError('expected {} style weights, got {}'.format(num_styles, values.size))
    if not np.all(np.isfinite(values)):
        raise ValueError('style weights must be finite, got {}'.format(values.tolist()))
    if np.any(values < 0):
        raise ValueError('style weights must not be negative, got {}'.format(values.tolist()))
    total = values.sum()
    if total <= 0:
        raise ValueError('style weights must not all be zero')
    return values / total


def _pixels(shape):
    return shape[0] * shape[1]


def _round_to_multiple(value):
    return max(SIZE_MULTIPLE, int(round(value / float(SIZE_MULTIPLE))) * SIZE_MULTIPLE)


def _resize(image, height, width):
    """Resize with INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _byte_values(dtype):
    """The value of each byte 0..255 when read as dtype (uint8 or int8)."""
    return np.arange(256, dtype=np.uint8).view(dtype).astype(np.float64)


def _quantization(detail):
    """(scale, zero_point), with the identity for tensors that carry none."""
    scale, zero_point = detail['quantization']
    if scale == 0:
        return 1.0, 0
    return float(scale), int(zero_point)


def _describe(details):
    return ', '.join('{} {} {}'.format(d['name'], list(_signature(d)), np.dtype(d['dtype']).name)
                     for d in details)


def _signature(detail):
    """Shape with -1 for dynamic dimensions.

    Runtimes without 'shape_signature' report a dynamic model's image as
    [1, 1, 1, 3]; a 1x1 image model makes no sense, so that means dynamic.
    """
    if 'shape_signature' in detail:
        return [int(v) for v in detail['shape_signature']]
    shape = [int(v) for v in detail['shape']]
    if len(shape) == 4 and shape[1] == 1 and shape[2] == 1:
        shape[1] = shape[2] = -1
    return shape


def _is_image(signature, dtype):
    return (len(signature) == 4 and signature[0] == 1 and signature[3] == 3
            and dtype in SUPPORTED_DTYPES)


class Stylizer(object):
    """A validated TFLite style model: stylize(rgb) -> stylized uint8 RGB frame.

    processing_size: longest side (px) the network runs at; 0 means the frame
    size for dynamic models. Fixed-size models always run at their own size.
    Sizes are rounded to multiples of 4 (the networks' stride).
    output_size: 'input' (the frame's size) or 'processing'.
    Not thread-safe: one stylize() call at a time per instance.
    """

    def __init__(self, model_path, num_threads=2, processing_size=0, output_size='input'):
        if not isinstance(num_threads, numbers.Integral) or num_threads < 1:
            raise ValueError(
                'num_threads must be a positive integer, got {!r}'.format(num_threads))
        self.model_path = model_path
        self.num_threads = int(num_threads)
        self.processing_size = processing_size
        self.output_size = output_size
        name, version, interpreter_class = find_runtime()
        self.backend = '{} {}'.format(name, version)
        self._allocated_shape = None
        self._load(interpreter_class)
        self._dry_run()

    @property
    def processing_size(self):
        return self._processing_size

    @processing_size.setter
    def processing_size(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError('processing_size must be an integer, got {!r}'.format(value))
        if value != 0 and not MIN_PROCESSING_SIZE <= value <= MAX_PROCESSING_SIZE:
            raise ValueError('processing_size must be 0 (frame size) or between {} and {} px, '
                             'got {}'.format(MIN_PROCESSING_SIZE, MAX_PROCESSING_SIZE, value))
        self._processing_size = int(value)

    @property
    def output_size(self):
        return self._output_size

    @output_size.setter
    def output_size(self, value):
        if value not in OUTPUT_SIZES:
            raise ValueError('output_size must be one of {}, got {!r}'.format(OUTPUT_SIZES, value))
        self._output_size = value

    def _load(self, interpreter_class):
        path = self.model_path
        problem = regular_file_problem(path, MAX_MODEL_BYTES)
        if problem:
            raise ModelError(path, problem)
        try:
            with open(path, 'rb') as model_file:
                self._model_content = model_file.read()
        except (IOError, OSError) as error:  # e.g. no read permission
            raise ModelError(path, 'cannot read it: {}'.format(error.strerror or error))
        problem = model_content_problem(self._model_content)
        if problem:
            raise ModelError(path, problem)
        self._interpreter_class = interpreter_class
        try:
            self._interpreter = self._new_interpreter()
            inputs = self._interpreter.get_input_details()
            outputs = self._interpreter.get_output_details()
        except Exception as error:  # the runtimes raise assorted types
            raise ModelError(path, 'the TFLite runtime cannot load it: {}'.format(error))

        images = [d for d in inputs if _is_image(_signature(d), d['dtype'])]
        weights = [d for d in inputs if len(_signature(d)) == 2 and _signature(d)[0] == 1
                   and _signature(d)[1] > 0 and d['dtype'] == np.float32]
        if len(images) != 1 or len(images) + len(weights) != len(inputs):
            raise ModelError(path, 'inputs must be image [1,H,W,3] (float32, uint8 or int8) and '
                             'optionally style_weights [1,N] float32; found {}'.format(
                                 _describe(inputs)))
        if not outputs or not _is_image(_signature(outputs[0]), outputs[0]['dtype']):
            raise ModelError(path, 'output 0 must be [1,H,W,3] float32, uint8 or int8; '
                             'found {}'.format(_describe(outputs)))

        self._image = images[0]
        self._output = outputs[0]
        self._weights_index = weights[0]['index'] if weights else None
        self.num_styles = _signature(weights[0])[1] if weights else 0
        self.input_dtype = np.dtype(self._image['dtype'])
        signature = _signature(self._image)
        dynamic = signature[1] < 0 or signature[2] < 0
        self.fixed_size = None if dynamic else (signature[1], signature[2])
        self._input_lut = self._make_input_lut()
        self._output_lut = self._make_output_lut()

    def _new_interpreter(self):
        return self._interpreter_class(model_content=self._model_content,
                                       num_threads=self.num_threads)

    def _make_input_lut(self):
        """Map each uint8 pixel value to the network's quantized input; None for float input
        (the frame is converted straight into the input buffer)."""
        if self.input_dtype == np.float32:
            return None
        values = np.arange(256, dtype=np.float64)
        scale, zero_point = _quantization(self._image)
        info = np.iinfo(self.input_dtype)
        return np.clip(np.rint(values / scale + zero_point), info.min,
                       info.max).astype(self.input_dtype)

    def _make_output_lut(self):
        """Map each quantized output byte to a uint8 pixel value; None for float output."""
        dtype = np.dtype(self._output['dtype'])
        if dtype == np.float32:
            return None
        scale, zero_point = _quantization(self._output)
        values = (_byte_values(dtype) - zero_point) * scale
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

    def _dry_run(self):
        """One inference on a synthetic frame, so broken models fail at load time."""
        height, width = self.fixed_size or (DRY_RUN_SIDE, DRY_RUN_SIDE)
        frame = np.linspace(0, 255, height * width * 3).astype(np.uint8).reshape(height, width, 3)
        weights = np.ones(self.num_styles) / self.num_styles if self.num_styles else None
        try:
            self._infer(frame, weights)
            raw = self._interpreter.get_tensor(self._output['index'])
        except Exception as error:
            raise ModelError(self.model_path, 'test inference failed: {}'.format(error))
        if raw.dtype == np.float32 and not np.all(np.isfinite(raw)):
            raise ModelError(self.model_path, 'test inference produced NaN or infinite values')

    def processing_shape(self, height, width):
        """(height, width) the network runs at for a frame of the given size."""
        if self.fixed_size is not None:
            return self.fixed_size
        if self._processing_size:
            scale = self._processing_size / float(max(height, width))
            height, width = height * scale, width * scale
        return _round_to_multiple(height), _round_to_multiple(width)

    def stylize(self, rgb, style_weights=None, strength=1.0):
        """Stylize a uint8 HxWx3 RGB frame; returns a uint8 RGB frame.

        style_weights: one weight per style for multi-style models (normalized
        here), None for single-style models. strength in [0, 1] blends the
        stylized frame with the original; 0 skips inference.
        """
        weights = validate_style_weights(style_weights, self.num_styles)
        if isinstance(strength, bool) or not isinstance(strength, numbers.Real) \
                or not 0.0 <= strength <= 1.0:
            raise ValueError('strength must be a number in [0, 1], got {!r}'.format(strength))
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
                or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError('expected a uint8 HxWx3 RGB frame, got {}'.format(
                '{} {}'.format(rgb.dtype, rgb.shape) if isinstance(rgb, np.ndarray)
                else type(rgb)))

        height, width = rgb.shape[:2]
        processing_height, processing_width = self.processing_shape(height, width)
        if self._output_size == 'input':
            out_height, out_width = height, width
        else:
            out_height, out_width = processing_height, processing_width
        if strength == 0:
            original = _resize(rgb, out_height, out_width)
            return original.copy() if original is rgb else original
        stylized = _resize(self._infer(_resize(rgb, processing_height, processing_width), weights),
                           out_height, out_width)
        if strength == 1:
            return stylized
        return cv2.addWeighted(stylized, strength, _resize(rgb, out_height, out_width),
                               1.0 - strength, 0.0)

    def _infer(self, frame, weights):
        """Run the network on a frame already at processing size; uint8 RGB output."""
        shape = frame.shape[:2]
        if (self.fixed_size is None and self._allocated_shape is not None
                and _pixels(self._allocated_shape) > RELEASE_FACTOR * _pixels(shape)):
            # A TFLite arena never shrinks: after one huge frame, a fresh interpreter gives
            # the memory back instead of holding it for the small frames that follow.
            self._interpreter = self._new_interpreter()
            self._allocated_shape = None
        interpreter = self._interpreter
        if self.fixed_size is None and shape != self._allocated_shape:
            interpreter.resize_tensor_input(self._image['index'], [1, shape[0], shape[1], 3])
            interpreter.allocate_tensors()
            self._allocated_shape = shape
        elif self._allocated_shape is None:
            interpreter.allocate_tensors()
            self._allocated_shape = shape
        if self._input_lut is None:
            # Convert straight into the interpreter's input buffer: one pass, no copies. The
            # view must be gone before invoke() (the runtimes refuse to run while one exists).
            buffer = interpreter.tensor(self._image['index'])()
            np.copyto(buffer[0], frame, casting='unsafe')
            del buffer
        else:
            interpreter.set_tensor(self._image['index'], cv2.LUT(
                np.ascontiguousarray(frame), self._input_lut)[np.newaxis])
        if weights is not None:
            interpreter.set_tensor(self._weights_index, weights.astype(np.float32)[np.newaxis])
        interpreter.invoke()
        if self._output_lut is not None:
            return cv2.LUT(interpreter.get_tensor(self._output['index'])[0].view(np.uint8),
                           self._output_lut)
        output = interpreter.tensor(self._output['index'])()
        # Rounds and saturates to 0..255 in one pass, straight from the output buffer.
        stylized = cv2.add(output[0], 0.0, dtype=cv2.CV_8U)
        del output
        return stylized
