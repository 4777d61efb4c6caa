"""Run models through the stylizer and save outputs and timings (Python 3.6 compatible).

test_python36_compat.py runs this under the Jetson Nano stack (.venv36: Python 3.6,
TensorFlow 2.6 tf.lite) and compares with the current runtime in the main venv.

    python run_models_py36.py OUT.npz MODEL.tflite [MODEL.tflite ...]
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from style_transfer_ros.catalog import StyleSelection  # noqa: E402
from style_transfer_ros.model_runtime import find_runtime  # noqa: E402
from style_transfer_ros.stylizer import Stylizer  # noqa: E402

FRAME_SIZE = (480, 640)


def reference_frame(height=FRAME_SIZE[0], width=FRAME_SIZE[1]):
    """A deterministic camera-like frame: gradients and smooth blobs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 127.5 + 127.5 * np.sin(x / 37.0) * np.cos(y / 53.0)
    green = 255.0 * x / width
    blue = 255.0 * (1.0 - y / height) * (0.5 + 0.5 * np.sin((x + y) / 29.0))
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)


def run(model_path, frame, repeats=5, num_threads=2):
    """Stylize frame with the model; return (output, median milliseconds)."""
    stylizer = Stylizer(model_path, num_threads=num_threads)
    weights = StyleSelection(model_path).weights_for(stylizer.num_styles)
    output = stylizer.stylize(frame, style_weights=weights)
    times = []
    for _ in range(repeats):
        start = time.monotonic()
        stylizer.stylize(frame, style_weights=weights)
        times.append(1000.0 * (time.monotonic() - start))
    return output, float(np.median(times)) if times else float('nan')


def main(argv):
    out_path, models = argv[0], argv[1:]
    name, version, _ = find_runtime()
    frame = reference_frame()
    results = {'runtime': np.array('%s %s' % (name, version))}
    for index, model in enumerate(models):
        output, ms = run(model, frame)
        results['output_%d' % index] = output
        results['ms_%d' % index] = np.array(ms)
        print('%-60s %8.1f ms  (%s %s, Python %d.%d)' % (
            os.path.basename(model), ms, name, version, sys.version_info[0], sys.version_info[1]))
    np.savez(out_path, **results)


if __name__ == '__main__':
    main(sys.argv[1:])
