"""sensor_msgs/Image and CompressedImage <-> numpy RGB conversion (the only place that does it).

Uses ROS 2 cv_bridge for 8-bit encodings when it is importable and passes a
self-test; numpy/OpenCV otherwise, with identical results (cv_bridge uses the
same OpenCV colour conversions).

The node's frame path works on serialized (CDR) images: `parse_serialized_image` reads one in
place, so the pixels reach the network without a copy, and `serialize_image` writes the
stylized frame with one copy. rclpy's own conversion copies the pixels three times each way.
"""
import array
import struct

import cv2
import numpy as np

# encoding -> (bytes per pixel, OpenCV conversion to RGB or None)
_ENCODINGS = {
    'rgb8': (3, None),
    'bgr8': (3, cv2.COLOR_BGR2RGB),
    'rgba8': (4, cv2.COLOR_RGBA2RGB),
    'bgra8': (4, cv2.COLOR_BGRA2RGB),
    'mono8': (1, cv2.COLOR_GRAY2RGB),
    'mono16': (2, cv2.COLOR_GRAY2RGB),
    # ROS "yuv422" is UYVY byte order; "yuv422_yuy2" is YUYV.
    'yuv422': (2, cv2.COLOR_YUV2RGB_UYVY),
    'uyvy': (2, cv2.COLOR_YUV2RGB_UYVY),
    'yuv422_yuy2': (2, cv2.COLOR_YUV2RGB_YUY2),
    'yuyv': (2, cv2.COLOR_YUV2RGB_YUY2),
}
SUPPORTED_ENCODINGS = tuple(sorted(_ENCODINGS))
OUTPUT_ENCODINGS = ('rgb8', 'bgr8')
# cv_bridge scales 16-bit images differently across versions; mono16 stays ours.
_BRIDGE_ENCODINGS = tuple(e for e in SUPPORTED_ENCODINGS if e != 'mono16')


class ImageConversionError(ValueError):
    """A frame that cannot be converted; the message says why."""


def _check_layout(msg):
    """Validate the frame geometry; return bytes per pixel."""
    if msg.encoding not in _ENCODINGS:
        raise ImageConversionError('unsupported encoding {!r}; supported: {}'.format(
            msg.encoding, ', '.join(SUPPORTED_ENCODINGS)))
    bytes_per_pixel = _ENCODINGS[msg.encoding][0]
    if msg.width == 0 or msg.height == 0:
        raise ImageConversionError('empty frame ({}x{})'.format(msg.width, msg.height))
    if msg.step < msg.width * bytes_per_pixel:
        raise ImageConversionError('step {} is smaller than width {} x {} bytes per pixel'.format(
            msg.step, msg.width, bytes_per_pixel))
    if len(msg.data) != msg.height * msg.step:
        raise ImageConversionError('data has {} bytes, expected height {} x step {} = {}'.format(
            len(msg.data), msg.height, msg.step, msg.height * msg.step))
    if bytes_per_pixel == 2 and msg.encoding != 'mono16' and msg.width % 2:
        raise ImageConversionError(
            '{} needs an even width, got {}'.format(msg.encoding, msg.width))
    return bytes_per_pixel


def _numpy_to_rgb(msg, bytes_per_pixel, copy=True):
    try:
        data = np.frombuffer(msg.data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        data = np.asarray(msg.data, dtype=np.uint8)
    rows = data.reshape(msg.height, msg.step)[:, :msg.width * bytes_per_pixel]
    conversion = _ENCODINGS[msg.encoding][1]
    if msg.encoding == 'mono16':
        pixels = np.ascontiguousarray(rows).view('>u2' if msg.is_bigendian else '<u2')
        return cv2.cvtColor((pixels >> 8).astype(np.uint8), conversion)
    pixels = rows.reshape(msg.height, msg.width, bytes_per_pixel)
    if conversion is None:
        return pixels.copy() if copy else pixels
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


_bridge = []  # [CvBridge or None], filled on first use


def _working_bridge():
    """A ROS 2 CvBridge that converts test frames exactly like our numpy path, or None.

    The ROS 1 'cv-bridge' package also imports as cv_bridge; the self-test
    (padded rows, BGR and UYVY) rejects any bridge that disagrees.
    """
    if not _bridge:
        _bridge.append(None)
        try:
            from cv_bridge import CvBridge
            bridge = CvBridge()
            for encoding, pixel_bytes in (('bgr8', 3), ('yuv422', 2)):
                msg = _test_message(encoding, pixel_bytes)
                expected = _numpy_to_rgb(msg, pixel_bytes)
                converted = bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8')
                if not np.array_equal(converted, expected):
                    return None
            _bridge[0] = bridge
        except Exception:  # missing, ROS 1, or broken: fall back to numpy
            pass
    return _bridge[0]


def _test_message(encoding, bytes_per_pixel):
    from sensor_msgs.msg import Image
    msg = Image()
    msg.height, msg.width, msg.encoding = 3, 4, encoding
    msg.step = msg.width * bytes_per_pixel + 2
    msg.data = array.array('B', bytearray(i * 37 % 256 for i in range(msg.height * msg.step)))
    return msg


def image_msg_to_rgb(msg, copy=True):
    """Return a sensor_msgs/Image (or a SerializedImage) as a uint8 HxWx3 RGB array.

    copy=False may return a view of msg.data for rgb8 frames (the node's frame path, where
    the message lives no longer than the frame)."""
    bytes_per_pixel = _check_layout(msg)
    if msg.encoding in _BRIDGE_ENCODINGS and copy:
        bridge = _working_bridge()
        if bridge is not None:
            return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8'))
    return _numpy_to_rgb(msg, bytes_per_pixel, copy)


def _output_pixels(rgb, encoding):
    """Check an output frame and its encoding; return its pixels in that encoding's order."""
    if encoding not in OUTPUT_ENCODINGS:
        raise ImageConversionError('output encoding must be one of {}, got {!r}'.format(
            OUTPUT_ENCODINGS, encoding))
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError('expected a uint8 HxWx3 array, got {} {}'.format(
            rgb.dtype, rgb.shape))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if encoding == 'bgr8' else rgb


def rgb_to_image_msg(rgb, header, encoding='rgb8'):
    """Build a sensor_msgs/Image (rgb8 or bgr8) from a uint8 HxWx3 RGB array."""
    from sensor_msgs.msg import Image
    pixels = _output_pixels(rgb, encoding)
    msg = Image()
    msg.header = header
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    # One memcpy from the array's buffer (tobytes() would add a second); assigning lists or
    # numpy arrays is ~1000x slower.
    data = array.array('B')
    data.frombytes(np.ascontiguousarray(pixels).data)
    msg.data = data
    return msg


# Serialized (CDR) sensor_msgs/Image: encapsulation header, then fields aligned to their size
# counted from the end of that header.
_CDR_LITTLE_ENDIAN = b'\x00\x01\x00\x00'
_CDR_HEADER_SIZE = 4


class SerializedImage(object):
    """The fields of a serialized sensor_msgs/Image; `data` is a view of the buffer."""

    __slots__ = ('stamp_sec', 'stamp_nanosec', 'frame_id', 'height', 'width', 'encoding',
                 'is_bigendian', 'step', 'data')


class _CdrReader(object):
    def __init__(self, buffer):
        self.view = memoryview(buffer)
        self.offset = _CDR_HEADER_SIZE

    def _take(self, size, align):
        self.offset += -(self.offset - _CDR_HEADER_SIZE) % align
        end = self.offset + size
        if end > len(self.view):
            raise ImageConversionError('truncated image message ({} bytes)'.format(len(self.view)))
        start, self.offset = self.offset, end
        return self.view[start:end]

    def uint32(self):
        return struct.unpack('<I', self._take(4, 4))[0]

    def int32(self):
        return struct.unpack('<i', self._take(4, 4))[0]

    def string(self):
        raw = self._take(self.uint32(), 1)
        return bytes(raw[:-1]).decode('utf-8', 'replace')  # the length counts the NUL

    def uint8(self):
        return self._take(1, 1)[0]


def parse_serialized_image(buffer):
    """Read a serialized sensor_msgs/Image (from a raw subscription) without copying pixels."""
    if bytes(buffer[:_CDR_HEADER_SIZE]) != _CDR_LITTLE_ENDIAN:  # rare: let rclpy decode it
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image
        msg = deserialize_message(bytes(buffer), Image)
        image = SerializedImage()
        image.stamp_sec, image.stamp_nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
        for field in ('height', 'width', 'encoding', 'is_bigendian', 'step', 'data'):
            setattr(image, field, getattr(msg, field))
        image.frame_id = msg.header.frame_id
        return image
    reader = _CdrReader(buffer)
    image = SerializedImage()
    image.stamp_sec, image.stamp_nanosec = reader.int32(), reader.uint32()
    image.frame_id = reader.string()
    image.height, image.width = reader.uint32(), reader.uint32()
    image.encoding = reader.string()
    image.is_bigendian = reader.uint8()
    image.step = reader.uint32()
    image.data = reader._take(reader.uint32(), 1)
    return image


def _cdr_string(text):
    """A CDR string: its length counting the NUL, its bytes, the NUL (starts 4-aligned)."""
    encoded = text.encode('utf-8') + b'\x00'
    return struct.pack('<I', len(encoded)) + encoded


def serialize_image(rgb, stamp_sec, stamp_nanosec, frame_id, encoding='rgb8'):
    """A serialized sensor_msgs/Image (rgb8 or bgr8) of a uint8 HxWx3 RGB array, as bytes for
    Publisher.publish; the pixels are copied once."""
    pixels = _output_pixels(rgb, encoding)
    height, width = rgb.shape[:2]
    head = struct.pack('<iI', stamp_sec, stamp_nanosec) + _cdr_string(frame_id)
    head += b'\x00' * (-len(head) % 4) + struct.pack('<II', height, width)
    head += _cdr_string(encoding) + b'\x00'  # is_bigendian
    head += b'\x00' * (-len(head) % 4) + struct.pack('<II', width * 3, height * width * 3)
    return b''.join((_CDR_LITTLE_ENDIAN, head, np.ascontiguousarray(pixels).data))


def compressed_msg_to_rgb(msg):
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to a uint8 HxWx3 RGB array."""
    bgr = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR) \
        if len(msg.data) else None
    if bgr is None:
        raise ImageConversionError('cannot decode compressed frame (format {!r}, {} bytes)'.format(
            msg.format, len(msg.data)))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# The `format` of the CompressedImage messages rgb_to_compressed_msg builds.
COMPRESSED_FORMAT = 'rgb8; jpeg compressed bgr8'


def rgb_to_jpeg(rgb, quality):
    """The JPEG bytes of a uint8 HxWx3 RGB array, as the compressed output carries them."""
    ok, encoded = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageConversionError('JPEG encoding failed')
    return encoded


def rgb_to_compressed_msg(rgb, header, quality):
    """A JPEG sensor_msgs/CompressedImage, as image_transport's compressed plugin sends it."""
    from sensor_msgs.msg import CompressedImage
    encoded = rgb_to_jpeg(rgb, quality)
    msg = CompressedImage(header=header, format=COMPRESSED_FORMAT)
    data = array.array('B')
    data.frombytes(encoded.data)
    msg.data = data
    return msg
