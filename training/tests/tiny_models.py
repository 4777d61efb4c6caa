"""Tiny Keras models (built-in layers only, so they save/load without custom objects) and
pictures for CI-sized converter/evaluator tests."""
import keras
import numpy as np
from keras import layers


def tiny_stylizer(num_styles=1, seed=0):
    """image [B,H,W,3] 0..255 (+ style_weights [B,N]) -> RGB 0..255; a stride-2 conv and an
    upsampling like the real networks, 16-channel 3x3 conv so dynamic-range quantization has
    a weight tensor big enough (> 1024 values) to quantize."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((None, None, 3), name='image')
    x = layers.Rescaling(1 / 127.5, -1)(image)
    x = layers.Conv2D(16, 3, padding='same', activation='relu')(x)
    x = layers.Conv2D(16, 3, strides=2, padding='same', activation='relu')(x)
    inputs = [image]
    if num_styles > 1:
        weights = keras.Input((num_styles,), name='style_weights')
        inputs.append(weights)
        x = x * layers.Reshape((1, 1, 16))(layers.Dense(16, activation='sigmoid')(weights))
    x = layers.UpSampling2D()(x)
    x = layers.Conv2D(3, 3, padding='same', activation='tanh')(x)
    return keras.Model(inputs if num_styles > 1 else image, layers.Rescaling(127.5, 127.5)(x))


def identity_model():
    """Exact identity (a 1x1 convolution with an identity kernel)."""
    image = keras.Input((None, None, 3), name='image')
    conv = layers.Conv2D(3, 1)
    model = keras.Model(image, conv(image))
    conv.set_weights([np.eye(3, dtype=np.float32)[None, None], np.zeros(3, np.float32)])
    return model


def constant_model(value=128.0):
    """Ignores its input (zero kernel, constant bias)."""
    model = identity_model()
    conv = model.layers[-1]
    conv.set_weights([np.zeros((1, 1, 3, 3), np.float32), np.full(3, value, np.float32)])
    return model


def textured_image(height=48, width=64, seed=0):
    """Random smooth-ish RGB picture, uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (height // 8 + 1, width // 8 + 1, 3))
    image = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    return np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
