"""Convert a trained style network (or a Fritz .h5) to .tflite plus its JSON sidecar.

The Keras model is traced into a tf.function with input signature image [1, None, None, 3]
(and style_weights [1, N] for conditional models), its variables are frozen into constants and
the frozen function is converted. (TFLiteConverter.from_keras_model fails on Fritz-like networks
under TF 2.21 / Keras 3 with "'tf.Conv2D' op is neither a custom op nor a flex op".)

Every conversion is checked: the .tflite is run on sample images by the node's own runner
(style_transfer_ros.model_runtime) and compared with the Keras model (PSNR); NaN, constant
output or low PSNR exit non-zero.

Consumers should tell the inputs apart by shape and type as model_runtime.model_tensors does
(the converter keeps the order image, style_weights and the names, but other tools do not
promise either).
"""
import argparse
import re
import sys
from pathlib import Path

import numpy as np
from style_transfer_ros.model_contract import (ARCHITECTURES, QUANTIZATIONS, TARGETS,
                                               validate_sidecar, write_sidecar)
from style_transfer_ros.model_runtime import ModelRunner, find_runtime, resize

from style_training import metadata as sidecar
from style_training.images import list_images, load_image, psnr

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - environments with TensorFlow only
    from tensorflow.lite.python import schema_py_generated as schema

# Lowest parity PSNR (dB, TFLite vs Keras) accepted by default: a margin below what each mode
# gives (the figures are in docs/training.md, "Convert, check and use").
DEFAULT_MIN_PSNR = {'none': 60.0, 'float16': 50.0, 'dynamic': 30.0, 'int8': 25.0}
# A stylized image whose pixels vary less than this (std over all pixels, 0..255) is "constant".
MIN_OUTPUT_STD = 1.0

# Highest version of each builtin op that the TF 2.5 TFLite runtime knows (the oldest runtime we
# target on a Jetson Nano / Coral: tensorflow 2.5-2.6 tf.lite, tflite_runtime 2.5). Source:
# tensorflow/lite/tools/versioning/runtime_version.cc, which maps (op, version) to the first
# runtime release that has it; these are the highest versions mapped to <= 2.5.0. Only ops our
# networks (and their quantized forms) use are listed; any other op fails the check as unknown.
# That map is the converter's own claim, not TF 2.5's kernel registry (docs/training.md).
NANO_MAX_OP_VERSIONS = {
    'ADD': 3, 'AVERAGE_POOL_2D': 3, 'BATCH_MATMUL': 4, 'CAST': 1, 'CONCATENATION': 3,
    'CONV_2D': 5, 'DEPTHWISE_CONV_2D': 6, 'DEPTH_TO_SPACE': 2, 'DEQUANTIZE': 4, 'DIV': 2,
    'EXPAND_DIMS': 1, 'FLOOR_DIV': 2, 'FLOOR_MOD': 1, 'FULLY_CONNECTED': 9, 'HARD_SWISH': 1,
    'LEAKY_RELU': 2, 'LOGISTIC': 3, 'MAXIMUM': 4, 'MAX_POOL_2D': 3, 'MEAN': 3, 'MINIMUM': 4,
    'MIRROR_PAD': 2, 'MUL': 4, 'NEG': 1, 'PACK': 3, 'PAD': 3, 'QUANTIZE': 2, 'RELU': 3,
    'RELU6': 3, 'RESHAPE': 1, 'RESIZE_BILINEAR': 4, 'RESIZE_NEAREST_NEIGHBOR': 4, 'RSQRT': 2,
    'SHAPE': 1, 'SLICE': 5, 'SQRT': 1, 'SQUARE': 1, 'SQUARED_DIFFERENCE': 2, 'STRIDED_SLICE': 5,
    'SUB': 5, 'SUM': 2, 'TANH': 3, 'TILE': 2, 'TRANSPOSE': 5, 'TRANSPOSE_CONV': 3,
}


def convert_model(keras_model, path, quantization='none', representative_images=None,
                  int8_io=False, fixed_size=None):
    """Write `keras_model` as a .tflite at `path`; return its size in bytes.

    representative_images: RGB arrays (any sizes unless fixed_size) for int8 calibration.
    int8_io: with int8, make the image input/output uint8 (scale 1: 0..255 maps exactly).
    fixed_size: (height, width) instead of dynamic H/W.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    from style_training.network import style_count

    if quantization not in QUANTIZATIONS:
        raise ValueError(f'quantization {quantization!r} not in {QUANTIZATIONS}')
    num_styles = style_count(keras_model)
    height, width = fixed_size or (None, None)
    signature = [tf.TensorSpec([1, height, width, 3], tf.float32, name='image')]
    if num_styles > 1:
        signature.append(tf.TensorSpec([1, num_styles], tf.float32, name='style_weights'))

    @tf.function
    def stylize(*inputs):
        return keras_model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    frozen = convert_variables_to_constants_v2(stylize.get_concrete_function(*signature))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if quantization != 'none':
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == 'float16':
        converter.target_spec.supported_types = [tf.float16]
    if quantization == 'int8':
        if not representative_images:
            raise ValueError('int8 needs representative_images')
        converter.representative_dataset = lambda: _calibration_inputs(
            representative_images, num_styles, fixed_size)
        flatbuffer = _int8_with_float_statistics(converter, int8_io)
    elif int8_io:
        raise ValueError('int8_io needs quantization int8')
    else:
        flatbuffer = converter.convert()
    Path(path).write_bytes(flatbuffer)
    return len(flatbuffer)


def _int8_with_float_statistics(converter, int8_io):
    """Int8 except the ops whose outputs hold one value per channel: instance norm's mean,
    variance and scale (and a conditional model's gamma and beta) stay float.

    Quantized, the DIV by std + epsilon meets divisors that round to its zero point, which
    the runtime refuses, E[x^2] - E[x]^2 in 8 bits loses the variance, and SQRT needs v2,
    which TF 2.6 lacks. These ops handle C values per image, so float costs nothing; the
    full-size products and sums stay int8. TF's QuantizationDebugger is the public way to
    quantize a calibrated model with some nodes left in float.
    """
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=_per_channel_outputs(debugger.calibrated_model))
    flatbuffer = debugger.get_nondebug_quantized_model()
    # The debugger's quantizer keeps float input and output; uint8 is set afterwards.
    return modify_model_io_type(flatbuffer, tf.uint8, tf.uint8) if int8_io else flatbuffer


def _per_channel_outputs(flatbuffer):
    """Names of the float tensors of shape [1, ..., 1, C] (any rank >= 2) that ops write."""
    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)
    names = []
    for i in range(graph.OperatorsLength()):
        operator = graph.Operators(i)
        for j in range(operator.OutputsLength()):
            tensor = graph.Tensors(operator.Outputs(j))
            shape = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else (
                tensor.ShapeAsNumpy())
            if (tensor.Type() == schema.TensorType.FLOAT32 and len(shape) >= 2
                    and all(size == 1 for size in shape[:-1])):
                names.append(tensor.Name().decode())
    return names


def _calibration_inputs(images, num_styles, fixed_size):
    """Representative samples; conditional models see each style alone and an even mix."""
    rng = np.random.default_rng(0)
    for i, image in enumerate(images):
        pixels = resize(image, *fixed_size) if fixed_size else image
        sample = [np.asarray(pixels, np.float32)[None]]
        if num_styles > 1:
            weights = np.full(num_styles, 1 / num_styles, np.float32)
            if i % (num_styles + 1):
                weights = np.eye(num_styles, dtype=np.float32)[rng.integers(num_styles)]
            sample.append(weights[None])
        yield sample


def synthetic_images(count=3, height=96, width=128):
    """Deterministic test pictures (gradients, a disc, stripes, mild noise) when no photos are
    given: enough structure for a parity check to mean something."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for i in range(count):
        red = 255 * x / width
        green = 255 * y / height
        disc = ((x - width * (0.3 + 0.2 * i)) ** 2 + (y - height / 2) ** 2) < (height / 4) ** 2
        blue = np.where(disc, 230.0, 40.0) + 60 * np.sin(x / (3 + 2 * i))
        image = np.stack([red, green, blue], -1) + rng.normal(0, 4, (height, width, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def default_weight_vectors(num_styles):
    """For parity checks of conditional models: each style alone and an even mix."""
    if num_styles == 1:
        return [None]
    return list(np.eye(num_styles, dtype=np.float32)) + [
        np.full(num_styles, 1 / num_styles, np.float32)]


def parity_psnr(keras_model, tflite_path, images, style_weights=None):
    """Compare the .tflite with the Keras model on each image (and each weight vector).

    Returns one dict per (image, weights): index, weights, psnr (dB, TFLite vs Keras, both
    clipped to 0..255) and problem ('NaN output', 'constant output' or None).
    Fixed-size models are compared at their own size.
    """
    runner = ModelRunner.from_file(tflite_path)
    results = []
    for index, image in enumerate(images):
        if runner.fixed_size:
            image = resize(image, *runner.fixed_size)
        for weights in (style_weights or [None]):
            inputs = np.asarray(image, np.float32)[None]
            if weights is not None:
                inputs = [inputs, np.asarray(weights, np.float32).reshape(1, -1)]
            expected = np.asarray(keras_model(inputs, training=False))[0]
            actual = runner.run(image, weights)
            problem = None
            if not np.all(np.isfinite(actual)):
                problem = 'NaN output'
            elif np.clip(actual, 0, 255).std() < MIN_OUTPUT_STD:
                problem = 'constant output'
            results.append({
                'index': index,
                'weights': None if weights is None else [float(w) for w in weights],
                'psnr': psnr(np.clip(expected, 0, 255), np.clip(actual, 0, 255)),
                'problem': problem,
            })
    return results


def runtime_version():
    """'ai_edge_litert 2.3.0': the runtime the parity check ran on, for verified_runtimes."""
    name, version, _ = find_runtime()
    return f'{name} {version}'


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


def nano_problems(op_versions):
    """Ops (or op versions) the TF 2.5 runtime lacks; empty when the model should load there."""
    problems = []
    for name, version in sorted(op_versions.items()):
        highest = NANO_MAX_OP_VERSIONS.get(name)
        if highest is None:
            problems.append(f'{name} v{version} (not in the TF 2.5 table)')
        elif version > highest:
            problems.append(f'{name} v{version} (TF 2.5 has up to v{highest})')
    return problems


def parse_size(text):
    """'480x640' -> (480, 640): height x width."""
    match = re.fullmatch(r'(\d+)x(\d+)', text)
    if not match:
        raise argparse.ArgumentTypeError(f'expected HxW, got {text!r}')
    return int(match[1]), int(match[2])


def build_parser():
    parser = argparse.ArgumentParser(
        prog='style-convert', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('source', help='model.keras, a training output dir (with training.json) '
                        'or a Fritz .h5')
    parser.add_argument('--output-dir', default='.', help='where <name>.tflite/.json go')
    parser.add_argument('--name', help='catalog name [a-z0-9_]+ (default: from the style)')
    parser.add_argument('--quantization', choices=QUANTIZATIONS, default='float16')
    parser.add_argument('--target', choices=TARGETS, default='current',
                        help="'nano': must also load on TF 2.5/2.6 tf.lite and tflite_runtime "
                        '2.5 (checks op versions, warns on int8 and dynamic)')
    parser.add_argument('--representative-dir', help='content images for int8 calibration')
    parser.add_argument('--representative-count', type=int, default=32)
    parser.add_argument('--representative-size', type=int, default=256, help='longest side')
    parser.add_argument('--int8-io', action='store_true', help='uint8 image input/output (int8)')
    parser.add_argument('--fixed-size', type=parse_size, help='HxW instead of dynamic H/W')
    parser.add_argument('--sample-dir', help='images for the parity check (default: synthetic)')
    parser.add_argument('--sample-count', type=int, default=3)
    parser.add_argument('--sample-size', type=int, default=256, help='longest side')
    parser.add_argument('--min-psnr', type=float,
                        help=f'parity threshold in dB (default per mode: {DEFAULT_MIN_PSNR})')
    parser.add_argument('--style', help='style name(s) for the sidecar, comma separated in '
                        'style_weights order (default: training.json or the file name)')
    parser.add_argument('--select-style', metavar='NAME',
                        help='conditional model: export only this style as a single-style '
                             'model (its one-hot weights baked in)')
    parser.add_argument('--architecture', choices=ARCHITECTURES)
    parser.add_argument('--alpha', type=float)
    parser.add_argument('--training-size', type=parse_size, help='HxW the model was trained at')
    parser.add_argument('--description')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    _check_options(args)
    model, num_styles, name, metadata = _load_checkpoint(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tflite_path = output_dir / f'{name}.tflite'
    op_versions = _convert(args, model, tflite_path)
    mean_psnr = _check_parity(args, model, tflite_path, num_styles)
    metadata.update(verified_runtimes=[runtime_version()], op_versions=op_versions,
                    nano_compatible=not nano_problems(op_versions),
                    parity_psnr_db=round(mean_psnr, 2))
    write_sidecar(output_dir / f'{name}.json', metadata)
    print(f'wrote {output_dir / (name + ".json")}')
    return 0


def _check_options(args):
    """Refuse what cannot work, warn about what is slow, before loading anything."""
    if args.target == 'nano' and args.quantization == 'int8':
        print('warning: int8 models ran ~12x slower than float16 on TF 2.6 (x86, 2 threads: '
              'about 1 s per 640x480 frame); prefer --quantization float16 or none for nano',
              file=sys.stderr)
    if args.target == 'nano' and args.quantization == 'dynamic':
        print('warning: dynamic-range models ran ~30x slower than float on TF 2.6 (hybrid '
              'kernels); prefer --quantization float16 or none for nano', file=sys.stderr)
    if args.quantization == 'int8' and not args.representative_dir:
        raise SystemExit('error: int8 needs --representative-dir (content images)')


def _load_checkpoint(args):
    """(Keras model, its style count, catalog name, sidecar metadata) of args.source, the
    metadata validated as the node will read it."""
    from style_training import checkpoints
    from style_training.network import style_count

    checkpoint = checkpoints.load(args.source, args.style.split(',') if args.style else None,
                                  args.architecture, args.alpha, args.training_size)
    num_styles = style_count(checkpoint.model)
    if num_styles > 1 and len(checkpoint.styles) != num_styles:
        raise SystemExit(f'error: model has {num_styles} styles, got names {checkpoint.styles}; '
                         'give --style a,b,...')
    if args.select_style:
        try:
            checkpoint = checkpoint.select_style(args.select_style)
        except ValueError as error:
            raise SystemExit(f'error: --select-style: {error}')
        num_styles = 1
    styles = checkpoint.styles
    name = args.name or (sidecar.painting_key(styles[0]) if len(styles) == 1 else None)
    if not name:
        raise SystemExit('error: give --name for this model')
    metadata = sidecar.build_metadata(
        name, args.quantization, checkpoint.architecture, checkpoint.alpha,
        checkpoint.training_size, styles, conditional=num_styles > 1,
        description=args.description, training_command=checkpoint.command, target=args.target)
    try:  # refuse before converting what the node would refuse to read
        validate_sidecar(metadata)
    except ValueError as error:
        raise SystemExit(f'error: {error}; nothing written')
    return checkpoint.model, num_styles, name, metadata


def _convert(args, model, tflite_path):
    """Write the .tflite; return its op versions. A 'nano' target that the TF 2.5 runtime
    could not load is deleted and refused."""
    representative = None
    if args.quantization == 'int8':
        representative = [load_image(p, args.representative_size)
                          for p in list_images(args.representative_dir, args.representative_count)]
    size = convert_model(model, tflite_path, args.quantization, representative, args.int8_io,
                         args.fixed_size)
    shape = 'fixed {}x{}'.format(*args.fixed_size) if args.fixed_size else 'dynamic H/W'
    print(f'wrote {tflite_path}: {size / 1024:.1f} KiB ({args.quantization}, {shape})')
    op_versions = operator_versions(tflite_path)
    problems = nano_problems(op_versions)
    print('ops: ' + ', '.join(f'{op} v{v}' for op, v in sorted(op_versions.items())))
    if args.target == 'nano' and problems:
        tflite_path.unlink()
        raise SystemExit('error: not loadable on the TF 2.5 runtime: ' + '; '.join(problems))
    return op_versions


def _check_parity(args, model, tflite_path, num_styles):
    """Print the parity of every sample (and weight vector); return the mean PSNR, or exit
    non-zero (the .tflite kept for inspection, no sidecar) when one check fails."""
    images = ([load_image(p, args.sample_size)
               for p in list_images(args.sample_dir, args.sample_count)] if args.sample_dir
              else synthetic_images(args.sample_count))
    results = parity_psnr(model, tflite_path, images, default_weight_vectors(num_styles))
    min_psnr = args.min_psnr if args.min_psnr is not None else DEFAULT_MIN_PSNR[args.quantization]
    for result in results:
        weights = f' weights {result["weights"]}' if result['weights'] else ''
        print(f'parity image {result["index"]}{weights}: {result["psnr"]:.2f} dB'
              + (f'  <- {result["problem"]}' if result['problem'] else ''))
    mean_psnr = float(np.mean([r['psnr'] for r in results]))
    print(f'parity mean: {mean_psnr:.2f} dB (threshold {min_psnr:.1f} dB)')
    failures = [r for r in results if r['problem'] or not r['psnr'] >= min_psnr]
    if failures:
        raise SystemExit(f'error: PARITY CHECK FAILED for {tflite_path} ({len(failures)} of '
                         f'{len(results)} checks: NaN/constant output or PSNR < {min_psnr} dB); '
                         'the file is kept for inspection, no sidecar written')
    return mean_psnr


if __name__ == '__main__':
    sys.exit(main())
