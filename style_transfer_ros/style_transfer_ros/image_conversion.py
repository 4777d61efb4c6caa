"""sensor_msgs/Image <-> numpy RGB conversion (the only place that does it).

Uses ROS 2 cv_bridge for 8-bit encodings when it is importable and passes a
self-test; numpy/OpenCV otherwise, with identical results (cv_bridge uses the
same OpenCV colour conversions).
"""
import array

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
        raise ImageConversionError('{} needs an even width, got {}'.format(msg.encoding, msg.width))
    return bytes_per_pixel


def _numpy_to_rgb(msg, bytes_per_pixel):
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
        return pixels.copy()  # never alias msg.data
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
                if not np.array_equal(bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8'), expected):
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


def image_msg_to_rgb(msg):
    """Return a sensor_msgs/Image as a uint8 HxWx3 RGB array (always a new array)."""
    bytes_per_pixel = _check_layout(msg)
    if msg.encoding in _BRIDGE_ENCODINGS:
        bridge = _working_bridge()
        if bridge is not None:
            return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8'))
    return _numpy_to_rgb(msg, bytes_per_pixel)


def rgb_to_image_msg(rgb, header, encoding='rgb8'):
    """Build a sensor_msgs/Image (rgb8 or bgr8) from a uint8 HxWx3 RGB array."""
    from sensor_msgs.msg import Image
    if encoding not in OUTPUT_ENCODINGS:
        raise ImageConversionError('output encoding must be one of {}, got {!r}'.format(
            OUTPUT_ENCODINGS, encoding))
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError('expected a uint8 HxWx3 array, got {} {}'.format(
            rgb.dtype, rgb.shape))
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if encoding == 'bgr8' else rgb
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
