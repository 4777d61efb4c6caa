"""Write the tiny TFLite fixture models (and sidecars) the tests run.

Not run in CI: needs TensorFlow; its outputs in fixtures/ are committed.
Each model is a stylization stand-in with stride 4 like the real networks:
a 4x4 average pool (blur), a colour transform, and a depth-to-space x4
upsample, so outputs are deterministic yet clearly unlike the input.

    python make_fixture_models.py
"""
import json
import os

import numpy as np
import tensorflow as tf

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')

# Colour matrices (output channel = row . input RGB), applied as 255 - M x.
COLOUR_MATRICES = {
    'warm': [[0.1, 0.8, 0.1], [0.7, 0.1, 0.2], [0.2, 0.2, 0.6]],
    'cool': [[0.6, 0.2, 0.2], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]],
    'inverse': [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
}


def stylize_graph(image, matrix):
    """Blur at 1/4 resolution, recolour, and upsample x4 with depth_to_space."""
    pooled = tf.nn.avg_pool2d(image, ksize=4, strides=4, padding='SAME')
    # 1x1 conv to 48 = 16 sub-pixels x 3 channels: nearest upsampling in one conv.
    kernel = np.tile(-np.asarray(matrix, np.float32).T, (1, 16))[None, None]
    bias = np.full(48, 255.0, np.float32)
    recoloured = tf.nn.conv2d(pooled, kernel, strides=1, padding='VALID') + bias
    upsampled = tf.nn.depth_to_space(recoloured, 4)
    return tf.clip_by_value(upsampled, 0.0, 255.0)


def convert(function, representative_shape=None):
    """Convert a tf.function; full-integer int8 when representative_shape is given."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], None)
    if representative_shape is not None:
        rng = np.random.RandomState(0)

        def representative_data():
            # Flat 4x4 blocks span the full 0..255 range even after the blur.
            batch, height, width, channels = representative_shape
            for _ in range(8):
                blocks = rng.uniform(0, 255, (batch, height // 4, width // 4, channels))
                yield [blocks.repeat(4, axis=1).repeat(4, axis=2).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def image_spec(height=None, width=None):
    return tf.TensorSpec([1, height, width, 3], tf.float32, name='image')


def single_style(matrix, height=None, width=None):
    @tf.function(input_signature=[image_spec(height, width)])
    def model(image):
        return stylize_graph(image, matrix)
    return model


def multi_style(names):
    @tf.function(input_signature=[image_spec(),
                                  tf.TensorSpec([1, len(names)], tf.float32,
                                                name='style_weights')])
    def model(image, style_weights):
        blended = 0.0
        for index, name in enumerate(names):
            weight = tf.reshape(style_weights[:, index], [1, 1, 1, 1])
            blended += weight * stylize_graph(image, COLOUR_MATRICES[name])
        return blended
    return model


def write(name, tflite_bytes, quantization, description, style_names=None):
    with open(os.path.join(FIXTURES, name + '.tflite'), 'wb') as f:
        f.write(tflite_bytes)
    sidecar = {
        'format_version': 1,
        'name': name,
        'description': description,
        'painting': 'Test pattern',
        'artist': 'style_transfer_ros tests',
        'licence': 'MIT',
        'training_size': [64, 64],
        'quantization': quantization,
        # The contract knows only the trainer's architectures; these stand-ins are none of them.
        'architecture': 'efficient',
        'alpha': 1.0,
    }
    if style_names:
        sidecar['style_names'] = list(style_names)
        sidecar['painting'] = ''
    with open(os.path.join(FIXTURES, name + '.json'), 'w') as f:
        json.dump(sidecar, f, indent=2, sort_keys=True)
        f.write('\n')


def wrong_io():
    """A valid TFLite file whose image input has one channel (must be rejected)."""
    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32, name='image')])
    def model(image):
        return tf.concat([image, image, image], axis=3) * 0.5
    return model


def main():
    warm = COLOUR_MATRICES['warm']
    write('float_dynamic', convert(single_style(warm)), 'none',
          'Float32 I/O, dynamic height and width')
    write('int8', convert(single_style(warm), representative_shape=(1, 32, 48, 3)), 'int8',
          'Full-integer model with int8 I/O, dynamic height and width')
    write('fixed_64x48', convert(single_style(COLOUR_MATRICES['cool'], 48, 64)), 'none',
          'Float32 I/O, fixed 48x64 (HxW) input')
    names = ('warm', 'cool', 'inverse')
    write('multi_style', convert(multi_style(names)), 'none',
          'Conditional model blending three colour styles', style_names=names)
    with open(os.path.join(FIXTURES, 'invalid', 'wrong_io.tflite'), 'wb') as f:
        f.write(convert(wrong_io()))


if __name__ == '__main__':
    main()
