"""Stylize uint8 RGB frames with a style model: processing size, resizing, strength and the
uint8 look-up tables, on top of model_runtime's ModelRunner.

Plain Python (no ROS) that works with Python 3.6 + tflite_runtime 2.5 /
tensorflow 2.6 on a Jetson Nano as well as with ai-edge-litert 2.x.
"""
import ctypes
import errno
import numbers
import os
import stat

import cv2
import numpy as np

from style_transfer_ros.model_contract import model_content_problem
from style_transfer_ros.model_runtime import (ModelRunner, UnusableModel, dequantize,
                                              find_runtime, quantize, resize)

OUTPUT_SIZES = ('input', 'processing')
# Networks downsample by 4 and upsample back, so sides must be multiples of 4.
SIZE_MULTIPLE = 4
MIN_PROCESSING_SIZE = 16
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


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and the reason."""

    def __init__(self, model_path, reason):
        super(ModelError, self).__init__('{}: {}'.format(model_path, reason))
        self.model_path = model_path
        self.reason = reason


def checked_processing_size(value):
    """processing_size as an int: 0 (the frame's size) or MIN..MAX_PROCESSING_SIZE px; raises
    ValueError. The one rule, for the Stylizer and the node's parameters alike."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError('processing_size must be an integer, got {!r}'.format(value))
    if value != 0 and not MIN_PROCESSING_SIZE <= value <= MAX_PROCESSING_SIZE:
        raise ValueError('processing_size must be 0 (frame size) or between {} and {} px, '
                         'got {}'.format(MIN_PROCESSING_SIZE, MAX_PROCESSING_SIZE, value))
    return int(value)


def _pixels(shape):
    return shape[0] * shape[1]


def _round_to_multiple(value):
    return max(SIZE_MULTIPLE, int(round(value / float(SIZE_MULTIPLE))) * SIZE_MULTIPLE)


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
        self.runner = self._load(interpreter_class)
        self.num_styles = self.runner.num_styles
        self.input_dtype = self.runner.input_dtype
        self.fixed_size = self.runner.fixed_size
        self._input_lut = self._make_input_lut()
        self._output_lut = self._make_output_lut()
        self._dry_run()

    @property
    def processing_size(self):
        return self._processing_size

    @processing_size.setter
    def processing_size(self, value):
        self._processing_size = checked_processing_size(value)

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
                model_content = model_file.read()
        except (IOError, OSError) as error:  # e.g. no read permission
            raise ModelError(path, 'cannot read it: {}'.format(error.strerror or error))
        problem = model_content_problem(model_content)
        if problem:
            raise ModelError(path, problem)
        try:
            return ModelRunner(model_content, self.num_threads, interpreter_class)
        except UnusableModel as error:
            raise ModelError(path, str(error))

    def _make_input_lut(self):
        """Map each uint8 pixel value to the network's quantized input; None for float input
        (the frame is converted straight into the input buffer)."""
        if self.input_dtype == np.float32:
            return None
        return quantize(np.arange(256), self.runner.image)

    def _make_output_lut(self):
        """Map each quantized output byte to a uint8 pixel value; None for float output."""
        dtype = self.runner.output_dtype
        if dtype == np.float32:
            return None
        values = dequantize(np.arange(256, dtype=np.uint8).view(dtype), self.runner.output)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

    def _dry_run(self):
        """One inference on a synthetic frame, so broken models fail at load time."""
        height, width = self.fixed_size or (DRY_RUN_SIDE, DRY_RUN_SIDE)
        frame = np.linspace(0, 255, height * width * 3).astype(np.uint8).reshape(height, width, 3)
        weights = np.eye(self.num_styles)[0] if self.num_styles else None  # the first style
        try:
            self._infer(frame, weights)
            raw = self.runner.output_values()
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

        style_weights: for multi-style models, one weight per style as the catalog
        validated and normalized them (catalog.StyleSelection.weights_for); None for
        single-style models. strength in [0, 1] blends the stylized frame with the
        original; 0 skips inference.
        """
        if (style_weights is None) != (self.num_styles == 0):
            raise ValueError('this model takes {} style weights, got {!r}'.format(
                self.num_styles, style_weights))
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
            original = resize(rgb, out_height, out_width)
            return original.copy() if original is rgb else original
        stylized = resize(self._infer(resize(rgb, processing_height, processing_width),
                                      style_weights), out_height, out_width)
        if strength == 1:
            return stylized
        return cv2.addWeighted(stylized, strength, resize(rgb, out_height, out_width),
                               1.0 - strength, 0.0)

    def _infer(self, frame, weights):
        """Run the network on a frame already at processing size; uint8 RGB output."""
        runner = self.runner
        shape = frame.shape[:2]
        if (self.fixed_size is None and runner.allocated_shape is not None
                and _pixels(runner.allocated_shape) > RELEASE_FACTOR * _pixels(shape)):
            runner.release()  # gives back what the last, much larger frame took
        runner.allocate(shape[0], shape[1])
        if self._input_lut is None:
            runner.set_pixels(frame)
        else:
            runner.set_input_values(cv2.LUT(np.ascontiguousarray(frame), self._input_lut))
        if weights is not None:
            runner.set_style_weights(weights)
        runner.invoke()
        if self._output_lut is not None:
            return cv2.LUT(runner.output_values().view(np.uint8), self._output_lut)
        output = runner.output_view()
        # Rounds and saturates to 0..255 in one pass, straight from the output buffer.
        stylized = cv2.add(output, 0.0, dtype=cv2.CV_8U)
        del output
        return stylized
