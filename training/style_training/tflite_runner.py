"""Minimal TFLite runner for style models (the training package must not import the ROS node),
and the one TFLite runtime chain of training: ai_edge_litert, else tensorflow.lite.

Handles the I/O contract: input `image` [1,H,W,3] (the 4-D input) and optional `style_weights`
[1,N] (the 2-D input), float or uint8/int8 with quantization parameters, dynamic or fixed H/W
(fixed-size models get the image resized in and the output resized back).
"""
from pathlib import Path

import numpy as np

from style_training.images import resize

try:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter
    RUNTIME = 'ai_edge_litert'
except ImportError:  # pragma: no cover - older environments
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.interpreter import Interpreter
    RUNTIME = 'tensorflow.lite'


def runtime_version():
    """'ai_edge_litert 2.3.0' style string for the sidecar's verified_runtimes."""
    from importlib.metadata import version
    package = 'ai-edge-litert' if RUNTIME == 'ai_edge_litert' else 'tensorflow'
    return f'{RUNTIME} {version(package)}'


def operator_versions(tflite_path):
    """{builtin op name: highest version used} read from the flatbuffer's operator codes."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith('_')}
    model = schema.Model.GetRootAs(Path(tflite_path).read_bytes(), 0)
    versions = {}
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in builtin_code; older ones in deprecated_builtin_code.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f'BUILTIN_{builtin}')
        if builtin == schema.BuiltinOperator.CUSTOM:
            name = f'CUSTOM:{code.CustomCode().decode()}'
        versions[name] = max(versions.get(name, 0), code.Version())
    return versions


class TFLiteStylizer:
    """Run a style .tflite on one RGB image at a time."""

    def __init__(self, model_path, num_threads=None):
        self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        inputs = self.interpreter.get_input_details()
        # Identify inputs by rank, not order or name: names vary between converters.
        self.image_input = next(d for d in inputs if len(d['shape']) == 4)
        self.weights_input = next((d for d in inputs if len(d['shape']) == 2), None)
        self.output = self.interpreter.get_output_details()[0]
        signature = self.image_input['shape_signature']
        self.fixed_size = (None if min(signature[1:3]) < 0
                           else tuple(int(v) for v in signature[1:3]))
        self.num_styles = int(self.weights_input['shape'][1]) if self.weights_input else 1
        self.allocated_size = None  # dynamic models allocate at the first image's size
        if self.fixed_size:
            self.interpreter.allocate_tensors()

    def __call__(self, image, style_weights=None):
        """image: [H, W, 3] RGB 0..255 (uint8 or float); returns float32 [H, W, 3] 0..255."""
        height, width = image.shape[:2]
        pixels = np.asarray(image, np.float32)
        if self.fixed_size:
            pixels = resize(pixels, *self.fixed_size)
        elif self.allocated_size != (height, width):
            self.interpreter.resize_tensor_input(self.image_input['index'], [1, height, width, 3])
            self.interpreter.allocate_tensors()
            self.allocated_size = (height, width)
            self.image_input = self._details(self.image_input['index'])
            self.output = self._details(self.output['index'], output=True)
        self._set(self.image_input, pixels[None])
        if self.weights_input is not None:
            if style_weights is None:
                raise ValueError(f'this model needs style_weights ({self.num_styles} values)')
            weights = np.asarray(style_weights, np.float32).reshape(1, self.num_styles)
            self._set(self.weights_input, weights)
        self.interpreter.invoke()
        result = self._get(self.output)[0]
        if self.fixed_size:
            result = resize(result, height, width)
        return result

    def _details(self, index, output=False):
        details = (self.interpreter.get_output_details() if output
                   else self.interpreter.get_input_details())
        return next(d for d in details if d['index'] == index)

    def _set(self, details, values):
        scale, zero_point = details['quantization']
        if details['dtype'] != np.float32:
            info = np.iinfo(details['dtype'])
            values = np.clip(np.round(values / scale + zero_point), info.min, info.max)
        self.interpreter.set_tensor(details['index'], values.astype(details['dtype']))

    def _get(self, details):
        values = self.interpreter.get_tensor(details['index'])
        scale, zero_point = details['quantization']
        if details['dtype'] != np.float32:
            return (values.astype(np.float32) - zero_point) * scale
        return values.astype(np.float32)
