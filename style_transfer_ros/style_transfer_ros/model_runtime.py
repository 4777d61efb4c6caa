"""The project's one way to run a style model: the TFLite runtime, the model's tensors, their
quantization, inference and the raw output.

The node's Stylizer adds resizing, blending and uint8 frames on top of ModelRunner; the
training converter's parity check and evaluate.py run models through ModelRunner too, so what
the converter checked is what the node runs. Python 3.6 and the standard library, numpy and
OpenCV only (no ROS): the node runs on the Jetson Nano's Python 3.6, and training/ imports this
module and model_contract.py, nothing else of the ROS package.
"""
import importlib
import os
import re

import cv2
import numpy as np

RUNTIME_ENV = 'STYLE_TRANSFER_TFLITE_RUNTIME'
# (name, module to import); searched in this order.
RUNTIMES = (
    ('ai_edge_litert', 'ai_edge_litert.interpreter'),
    ('tflite_runtime', 'tflite_runtime.interpreter'),
    ('tensorflow.lite', 'tensorflow'),
)
# tflite_runtime and TensorFlow releases older than this cannot load every op version that a
# current converter writes (TF 2.6 lacks TILE v3, for one); such runtimes get 'nano' models.
NANO_RUNTIME_BEFORE = (2, 10)
SUPPORTED_DTYPES = (np.float32, np.uint8, np.int8)

_runtime_cache = {}


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


class UnusableModel(ValueError):
    """The runtime cannot load a model, or its tensors are not a style model's; the message
    says why (the caller names the file)."""


def resize(image, height, width):
    """The one resize rule of the node and the trainer: INTER_AREA when shrinking (no
    aliasing), INTER_LINEAR when enlarging; the image itself when it has that size."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def signature(detail):
    """A tensor's shape with -1 for dynamic dimensions.

    Runtimes without 'shape_signature' report a dynamic model's image as [1, 1, 1, 3]; a 1x1
    image model makes no sense, so that means dynamic.
    """
    if 'shape_signature' in detail:
        return [int(v) for v in detail['shape_signature']]
    shape = [int(v) for v in detail['shape']]
    if len(shape) == 4 and shape[1] == 1 and shape[2] == 1:
        shape[1] = shape[2] = -1
    return shape


def _is_image(detail):
    shape = signature(detail)
    return (len(shape) == 4 and shape[0] == 1 and shape[3] == 3
            and detail['dtype'] in SUPPORTED_DTYPES)


def _is_style_weights(detail):
    shape = signature(detail)
    return len(shape) == 2 and shape[0] == 1 and shape[1] > 0 and detail['dtype'] == np.float32


def _describe(details):
    return ', '.join('{} {} {}'.format(d['name'], signature(d), np.dtype(d['dtype']).name)
                     for d in details)


def model_tensors(inputs, outputs):
    """(image input, style-weights input or None, output) of a style model's tensor details,
    told apart by shape and type, never by name or order (converters vary in both). Raises
    UnusableModel for any other set of tensors."""
    images = [d for d in inputs if _is_image(d)]
    weights = [d for d in inputs if _is_style_weights(d)]
    if len(images) != 1 or len(images) + len(weights) != len(inputs):
        raise UnusableModel('inputs must be image [1,H,W,3] (float32, uint8 or int8) and '
                            'optionally style_weights [1,N] float32; found {}'.format(
                                _describe(inputs)))
    if not outputs or not _is_image(outputs[0]):
        raise UnusableModel('output 0 must be [1,H,W,3] float32, uint8 or int8; found {}'.format(
            _describe(outputs)))
    return images[0], weights[0] if weights else None, outputs[0]


def quantization(detail):
    """(scale, zero_point), with the identity for tensors that carry none."""
    scale, zero_point = detail['quantization']
    if scale == 0:
        return 1.0, 0
    return float(scale), int(zero_point)


def quantize(values, detail):
    """Real values (pixel values 0..255) as the tensor's integer type stores them."""
    scale, zero_point = quantization(detail)
    info = np.iinfo(detail['dtype'])
    return np.clip(np.rint(np.asarray(values, np.float64) / scale + zero_point), info.min,
                   info.max).astype(detail['dtype'])


def dequantize(values, detail):
    """The real values (float64) that a tensor's integers stand for."""
    scale, zero_point = quantization(detail)
    return (np.asarray(values, np.float64) - zero_point) * scale


class ModelRunner(object):
    """A style model in a TFLite interpreter: its image input, optional style-weights input
    [1, N] and image output, found by model_tensors, and one inference at a time.

    model_content: the .tflite file's bytes. num_threads: None leaves it to the runtime.
    Raises UnusableModel for a file the runtime cannot load or that is no style model.
    Not thread-safe.
    """

    def __init__(self, model_content, num_threads=None, interpreter_class=None):
        self._model_content = model_content
        self.num_threads = num_threads
        self._interpreter_class = interpreter_class or find_runtime()[2]
        try:
            self._interpreter = self._new_interpreter()
            inputs = self._interpreter.get_input_details()
            outputs = self._interpreter.get_output_details()
        except Exception as error:  # the runtimes raise assorted types
            raise UnusableModel('the TFLite runtime cannot load it: {}'.format(error))
        self.image, self.style_weights, self.output = model_tensors(inputs, outputs)
        self.num_styles = signature(self.style_weights)[1] if self.style_weights else 0
        self.input_dtype = np.dtype(self.image['dtype'])
        self.output_dtype = np.dtype(self.output['dtype'])
        height, width = signature(self.image)[1:3]
        self.fixed_size = None if height < 0 or width < 0 else (height, width)
        self.allocated_shape = None  # (height, width) the tensors are allocated for

    @classmethod
    def from_file(cls, path, num_threads=None):
        with open(str(path), 'rb') as model_file:
            return cls(model_file.read(), num_threads)

    def _new_interpreter(self):
        return self._interpreter_class(model_content=self._model_content,
                                       num_threads=self.num_threads)

    def release(self):
        """Start a fresh interpreter: a TFLite arena never shrinks, so this gives back the
        memory a huge frame took. The next allocate() sizes the tensors again."""
        self._interpreter = self._new_interpreter()
        self.allocated_shape = None

    def allocate(self, height, width):
        """Size the tensors for a height x width image; a fixed-size model takes only its own."""
        shape = (height, width)
        if shape == self.allocated_shape:
            return
        if self.fixed_size is None:
            self._interpreter.resize_tensor_input(self.image['index'], [1, height, width, 3])
        elif shape != self.fixed_size:
            raise ValueError('this model takes {}x{} images only, got {}x{}'.format(
                self.fixed_size[0], self.fixed_size[1], height, width))
        self._interpreter.allocate_tensors()
        self.allocated_shape = shape

    def set_pixels(self, pixels):
        """The image input from pixel values 0..255 ([H, W, 3] at the allocated size, any
        dtype), quantized here for an int8 or uint8 input."""
        if self.input_dtype != np.float32:
            self.set_input_values(quantize(pixels, self.image))
            return
        # Convert straight into the interpreter's input buffer: one pass, no copies. The view
        # must be gone before invoke() (the runtimes refuse to run while one exists).
        buffer = self._interpreter.tensor(self.image['index'])()
        np.copyto(buffer[0], pixels, casting='unsafe')
        del buffer

    def set_input_values(self, values):
        """The image input as the model stores it ([H, W, 3], its dtype and quantization)."""
        self._interpreter.set_tensor(self.image['index'], values[np.newaxis])

    def set_style_weights(self, weights):
        """One weight per style, as given (the catalog validates and normalizes them)."""
        values = np.asarray(weights, np.float32)
        if values.shape != (self.num_styles,):
            raise ValueError('this model takes {} style weights, got {!r}'.format(
                self.num_styles, weights))
        self._interpreter.set_tensor(self.style_weights['index'], values[np.newaxis])

    def invoke(self):
        self._interpreter.invoke()

    def output_values(self):
        """The output [H, W, 3] as the model stores it (its dtype and quantization), a copy."""
        return self._interpreter.get_tensor(self.output['index'])[0]

    def output_view(self):
        """A float model's output [H, W, 3] in the interpreter's own buffer, no copy; drop it
        before the next invoke()."""
        return self._interpreter.tensor(self.output['index'])()[0]

    def float_output(self):
        """The output as float32 pixel values, unclipped (dequantized for an integer output)."""
        values = self.output_values()
        if self.output_dtype == np.float32:
            return values
        return dequantize(values, self.output).astype(np.float32)

    def run(self, pixels, style_weights=None):
        """One inference on pixels [H, W, 3] (0..255; a fixed-size model's own size) with one
        weight per style for a multi-style model; returns float_output()."""
        if (style_weights is None) != (self.num_styles == 0):
            raise ValueError('this model takes {} style weights, got {!r}'.format(
                self.num_styles, style_weights))
        self.allocate(pixels.shape[0], pixels.shape[1])
        self.set_pixels(pixels)
        if self.num_styles:
            self.set_style_weights(style_weights)
        self.invoke()
        return self.float_output()
