"""Training data in numpy, for any Keras backend: content images (folders, Fritz/COCO
TFRecords, or .npy/.npz stacks of crops such as gpu_pack writes) batched by a
keras.utils.PyDataset, style images, and the `path:weight` style arguments."""
import functools
import struct
from pathlib import Path

import cv2
import keras
import numpy as np
from style_transfer_ros.model_runtime import resize

from .images import IMAGE_SUFFIXES, load_image

TFRECORD_SUFFIXES = ('.tfrecord', '.tfrecords', '.record')
TFRECORD_IMAGE_KEY = 'image/encoded'  # as written by the Fritz style transfer dataset script
ARRAY_SUFFIXES = ('.npy', '.npz')  # stacks of images, see _image_stack
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


class ContentImages:
    """The content images of folders (recursively) and files, in sorted order, each read on
    demand as RGB uint8 (None when it does not decode)."""

    def __init__(self, sources):
        self.items = []  # (kind, source, key)
        for source in map(Path, sources):
            if not source.exists():
                raise FileNotFoundError(f'content source not found: {source}')
            paths = (sorted(p for p in source.rglob('*') if p.is_file()) if source.is_dir()
                     else [source])
            for path in paths:
                suffix = path.suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    self.items.append(('file', path, None))
                elif suffix in ARRAY_SUFFIXES:
                    stack = _image_stack(path)
                    self.items += [('array', stack, index) for index in range(len(stack))]
                elif suffix in TFRECORD_SUFFIXES or '.tfrecord' in path.name.lower():
                    self.items += [('record', path, offset) for offset in _record_offsets(path)]
        if not self.items:
            raise FileNotFoundError(f'no images, TFRecords or image arrays in {sources}')

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        kind, source, key = self.items[index]
        if kind == 'array':
            image = source[key]
            return None if image is None else np.asarray(image)
        if kind == 'file':
            encoded = np.fromfile(source, np.uint8)
        else:
            encoded = np.frombuffer(_example_image(_read_record(source, key)), np.uint8)
        bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if encoded.size else None
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class EncodedImages:
    """Images stored as their encoded bytes ('encoded', split at 'offsets'), decoded on
    demand: RGB uint8, None when one does not decode."""

    def __init__(self, encoded, offsets):
        self.encoded, self.offsets = encoded, offsets

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, index):
        chunk = self.encoded[self.offsets[index]:self.offsets[index + 1]]
        bgr = cv2.imdecode(chunk, cv2.IMREAD_COLOR) if chunk.size else None
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _image_stack(path):
    """The images of an .npy (uint8 [N, H, W, 3], memory-mapped) or an .npz: its 'images'
    (the same) or its 'encoded' and 'offsets' (EncodedImages, as gpu_carry writes them)."""
    if path.suffix.lower() == '.npz':
        with np.load(path) as saved:
            if 'encoded' in saved:
                return EncodedImages(saved['encoded'], saved['offsets'])
            stack = saved['images']
    else:
        stack = np.load(path, mmap_mode='r')
    if stack.ndim != 4 or stack.shape[-1] != 3 or stack.dtype != np.uint8:
        raise ValueError(f'{path}: expected uint8 [N, H, W, 3] RGB images, got '
                         f'{stack.dtype} {stack.shape}')
    return stack


def _record_offsets(path):
    """Byte offsets of the records of a TFRecord file (length-prefixed, CRCs not checked)."""
    offsets, offset, size = [], 0, path.stat().st_size
    with open(path, 'rb') as f:
        while offset + 12 <= size:
            f.seek(offset)
            (length,) = struct.unpack('<Q', f.read(8))
            offsets.append(offset)
            offset += 12 + length + 4
    return offsets


def _read_record(path, offset):
    with open(path, 'rb') as f:
        f.seek(offset)
        (length,) = struct.unpack('<Q', f.read(8))
        f.seek(offset + 12)
        return f.read(length)


def _example_image(record):
    """The encoded image of a tf.train.Example (parsed with TensorFlow's protobuf classes:
    TFRecords need TensorFlow installed, image folders and arrays do not)."""
    from tensorflow.core.example import example_pb2
    feature = example_pb2.Example.FromString(record).features.feature.get(TFRECORD_IMAGE_KEY)
    return feature.bytes_list.value[0] if feature and feature.bytes_list.value else b''


def random_crop(image, image_size, rng):
    """Rescale the shorter side to a random size in [image_size, MAX_UPSCALE * image_size],
    then take a random square crop and maybe mirror it: float32 [size, size, 3] in 0..255."""
    height, width = image.shape[:2]
    target = image_size * rng.uniform(1.0, MAX_UPSCALE)
    scale = target / min(height, width)
    image = resize(image, max(image_size, int(np.ceil(height * scale))),
                   max(image_size, int(np.ceil(width * scale))))
    top = rng.integers(0, image.shape[0] - image_size + 1)
    left = rng.integers(0, image.shape[1] - image_size + 1)
    crop = image[top:top + image_size, left:left + image_size]
    return np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop, np.float32)


class ContentBatches(keras.utils.PyDataset):
    """Batches `start`..`steps` - 1 of an endless stream of random content crops: dicts with
    'content' float32 [batch_size, image_size, image_size, 3] RGB 0..255 plus what
    `extras(content, rng)` adds (the trainer's random inputs). Batch i depends only on seed
    and i (its own generator; each pass over the images in a new random order), so a resumed
    run goes on with the batches it would have seen and workers may run in any order.
    Undecodable images are skipped."""

    def __init__(self, sources, image_size, batch_size, steps, seed=0, start=0, extras=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.images = sources if isinstance(sources, ContentImages) else ContentImages(sources)
        self.image_size, self.batch_size = image_size, batch_size
        self.steps, self.seed, self.start, self.extras = steps, seed, start, extras

    def __len__(self):
        return max(0, self.steps - self.start)

    def __getitem__(self, index):
        step = self.start + index
        rng = np.random.default_rng([self.seed, 0, step])
        crops, position = [], step * self.batch_size
        while len(crops) < self.batch_size:
            epoch, offset = divmod(position, len(self.images))
            image = self.images[_order(self.seed, epoch, len(self.images))[offset]]
            position += 1
            if image is not None and image.ndim == 3:
                crops.append(random_crop(image, self.image_size, rng))
            elif position > (step + 1) * self.batch_size + len(self.images):
                raise ValueError('no content image decodes')
        content = np.stack(crops)
        batch = {'content': content}
        if self.extras is not None:
            batch.update(self.extras(content, rng))
        return batch


@functools.lru_cache(maxsize=4)
def _order(seed, epoch, count):
    """The order of the images in one pass over them."""
    return np.random.default_rng([seed, 1, epoch]).permutation(count)


def first_content_image(sources, size):
    """The first content image (sorted order) resized to size x size: a fixed preview input."""
    images = ContentImages(sources)
    image = next(image for image in map(images.__getitem__, range(len(images)))
                 if image is not None)
    return resize(image, size, size).astype(np.float32)[None]
