"""Training data: content images (folders or Fritz/COCO TFRecords) as a tf.data pipeline,
style images, and the `path:weight` style arguments."""
from pathlib import Path

import numpy as np
import tensorflow as tf

from .images import IMAGE_SUFFIXES, load_image, resize

TFRECORD_SUFFIXES = ('.tfrecord', '.tfrecords', '.record')
TFRECORD_IMAGE_KEY = 'image/encoded'  # as written by the Fritz style transfer dataset script
MAX_UPSCALE = 1.5  # random rescale of the shorter side between image_size and this times it


def parse_styles(specs):
    """['a.jpg:2', 'b.jpg', 'c.jpg:1,d.jpg:0.5'] -> [(path, weight), ...]; weight defaults to 1.
    A colon only counts as a separator when what follows is a number (paths may hold colons)."""
    styles = []
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(','))):
            path, _, weight = item.rpartition(':')
            try:
                styles.append((path, float(weight)) if path else (item, 1.0))
            except ValueError:
                styles.append((item, 1.0))
    if not styles:
        raise ValueError('no style images given')
    return styles


def load_style_image(path, size):
    """RGB float32 [1, H, W, 3] in 0..255, resized so its shorter side is `size` (None: as is)."""
    image = load_image(path)
    if size:
        height, width = image.shape[:2]
        scale = size / min(height, width)
        image = resize(image, max(1, round(height * scale)), max(1, round(width * scale)))
    return image.astype(np.float32)[None]


def content_files(sources):
    """(image files, tfrecord files) found in the given folders (recursively) or files."""
    images, records = [], []
    for source in map(Path, sources):
        if not source.exists():
            raise FileNotFoundError(f'content source not found: {source}')
        paths = (sorted(p for p in source.rglob('*') if p.is_file()) if source.is_dir()
                 else [source])
        images += [str(p) for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        records += [str(p) for p in paths
                    if p.suffix.lower() in TFRECORD_SUFFIXES or '.tfrecord' in p.name.lower()]
    if not images and not records:
        raise FileNotFoundError(f'no images or TFRecords in {sources}')
    return images, records


def _encoded_images(sources):
    """Dataset of encoded image strings from image files and TFRecords."""
    images, records = content_files(sources)
    datasets = []
    if images:
        datasets.append(tf.data.Dataset.from_tensor_slices(images).map(tf.io.read_file))
    if records:
        feature = {TFRECORD_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
        datasets.append(tf.data.TFRecordDataset(records).map(
            lambda record: tf.io.parse_single_example(record, feature)[TFRECORD_IMAGE_KEY]))
    encoded = datasets[0]
    for dataset in datasets[1:]:
        encoded = encoded.concatenate(dataset)
    return encoded


def _decode(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.cast(image, tf.float32)


def _random_crop(image, image_size, seed):
    """Rescale the shorter side to a random size in [image_size, MAX_UPSCALE * image_size],
    then take a random square crop and maybe mirror it."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = image_size * tf.random.stateless_uniform([], seed, 1.0, MAX_UPSCALE)
    new_size = tf.cast(tf.math.ceil(shape * target / tf.reduce_min(shape)), tf.int32)
    image = tf.image.resize(image, tf.maximum(new_size, image_size), antialias=True)
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed + 1)
    image = tf.image.stateless_random_flip_left_right(image, seed + 2)
    return tf.clip_by_value(image, 0.0, 255.0)


def content_dataset(sources, image_size, batch_size, seed=0, shuffle_buffer=1000):
    """Endless, shuffled batches of float32 [batch_size, image_size, image_size, 3] RGB 0..255;
    the same seed gives the same batches. Undecodable files are skipped."""
    encoded = _encoded_images(sources).shuffle(shuffle_buffer, seed=seed,
                                               reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    dataset = tf.data.Dataset.zip(encoded, seeds).map(
        lambda data, pair: _random_crop(_decode(data), image_size, pair),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.ignore_errors().batch(batch_size, drop_remainder=True).prefetch(
        tf.data.AUTOTUNE)


def first_content_image(sources, size):
    """The first content image (sorted order) resized to size x size: a fixed preview input."""
    image = _decode(next(iter(_encoded_images(sources))))
    return tf.image.resize(image, [size, size], antialias=True)[None].numpy()
