"""sensor_msgs/Image and CompressedImage <-> numpy RGB conversion (the only place that does it).

Pixels only: the serialized (CDR) wire format the node's frame path reads and writes lives in
serialized_image. Encodings are converted with numpy and OpenCV's colour conversions, which
are what ROS 2 cv_bridge uses; cv_bridge itself is not a run-time dependency (its apt build
pins numpy 1, and the frame path needs views it cannot give). Its place is the test suite:
test_image_conversion checks this module against it where it is installed.
"""
import array
import os
import re
import struct
import tempfile
import threading
import zlib

import cv2
import numpy as np

from style_transfer_ros import serialized_image

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


class ImageConversionError(ValueError):
    """A frame that cannot be converted; the message says why."""


class OversizedImage(ImageConversionError):
    """A frame of more than max_pixels pixels (raised before any conversion or decoding)."""

    def __init__(self, height, width, max_pixels):
        super(OversizedImage, self).__init__('a {}x{} frame is more than {} pixels'.format(
            width, height, max_pixels))
        self.pixels = height * width


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


def image_msg_to_rgb(msg, copy=True, max_pixels=None):
    """Return a sensor_msgs/Image (or a serialized_image.SerializedImage) as a uint8 HxWx3
    RGB array; a frame of more than max_pixels pixels raises OversizedImage unconverted.

    copy=False may return a view of msg.data for rgb8 frames (the node's frame path, where
    the message lives no longer than the frame)."""
    if max_pixels is not None and msg.width * msg.height > max_pixels:
        raise OversizedImage(msg.height, msg.width, max_pixels)
    return _numpy_to_rgb(msg, _check_layout(msg), copy)


def serialized_msg_to_rgb(buffer, max_pixels=None):
    """(header, RGB array) of a serialized sensor_msgs/Image; rgb8 pixels stay in the buffer."""
    try:
        image = serialized_image.read(buffer)
    except serialized_image.TruncatedMessage as error:
        raise ImageConversionError(str(error))
    return image.header, image_msg_to_rgb(image, copy=False, max_pixels=max_pixels)


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


def serialize_image(rgb, header, encoding='rgb8'):
    """A serialized sensor_msgs/Image (rgb8 or bgr8) of a uint8 HxWx3 RGB array, as bytes for
    Publisher.publish (header: see serialized_image.write); the pixels are copied once."""
    pixels = _output_pixels(rgb, encoding)
    height, width = rgb.shape[:2]
    return serialized_image.write(header, height, width, encoding, width * 3,
                                  np.ascontiguousarray(pixels).data)


# Compressed input: JPEG and PNG only, recognised by their signatures; the size a header
# declares is checked before the decoder allocates anything.
COMPRESSED_FORMATS = ('jpeg', 'png')
_SIGNATURES = (('png', b'\x89PNG\r\n\x1a\n'), ('jpeg', b'\xff\xd8\xff'))
_FORMAT_WORDS = {'jpeg': 'jpeg', 'jpg': 'jpeg', 'png': 'png'}
_JPEG_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive (Huffman)
# Other SOF markers: lossless, hierarchical and arithmetic-coded processes.
_JPEG_OTHER_FRAMES = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_JPEG_STANDALONE = (0x01,) + tuple(range(0xD0, 0xD8))  # TEM, RST0..7: no length field
# What libjpeg and libpng print (through OpenCV) about data they cannot trust, and OpenCV's
# own log lines; any other output while a frame decodes is another thread's, passed on.
_DECODER_MESSAGE = re.compile(
    br'^(libpng (error|warning)|Corrupt JPEG data|Premature end of JPEG file|Invalid SOS '
    br'parameters|Inconsistent progression sequence|Unknown Adobe color transform|Warning: '
    br'unknown JFIF|Application transferred too|\[ ?(WARN|ERROR|INFO):\d)')
_DAMAGE_MESSAGE = re.compile(
    br'^(libpng error|Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|'
    br'Inconsistent progression sequence)')


def compressed_format(msg):
    """'jpeg' or 'png': what the data's signature says, checked against msg.format (an
    image_transport string such as 'jpeg', 'png' or 'rgb8; jpeg compressed bgr8'; empty
    leaves it to the signature)."""
    head = bytes(memoryview(msg.data)[:8])
    found = next((name for name, signature in _SIGNATURES if head.startswith(signature)), None)
    if found is None:
        raise ImageConversionError('compressed data is neither JPEG nor PNG (starts {!r})'.format(
            head[:4]))
    declared = set(_FORMAT_WORDS[word] for word in re.findall(r'[a-z]+', msg.format.lower())
                   if word in _FORMAT_WORDS)
    if msg.format.strip() and declared != {found}:
        raise ImageConversionError('format {!r} does not match the data, which is {}'.format(
            msg.format[:40], found.upper()))
    return found


def _png_size(data):
    """(height, width) from the IHDR chunk, which the PNG standard puts first."""
    if len(data) < 33 or bytes(data[8:16]) != b'\x00\x00\x00\x0dIHDR':
        raise ImageConversionError('PNG without an IHDR header')
    if zlib.crc32(data[12:29]) & 0xFFFFFFFF != struct.unpack('>I', data[29:33])[0]:
        raise ImageConversionError('PNG header is damaged (IHDR checksum)')
    width, height = struct.unpack('>II', data[16:24])
    return height, width


def _jpeg_size(data):
    """(height, width) from the first SOF0/1/2 segment; other segments are skipped by their
    lengths, and anything malformed or unsupported before the frame header raises."""
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ImageConversionError('JPEG has no marker at byte {}'.format(offset))
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        offset += 2
        if marker in _JPEG_STANDALONE:
            continue
        length = struct.unpack('>H', data[offset:offset + 2])[0]
        if marker in _JPEG_FRAMES:
            if length < 8 or offset + 7 > len(data):
                raise ImageConversionError('JPEG frame header is truncated')
            height, width = struct.unpack('>HH', data[offset + 3:offset + 7])
            return height, width
        if marker in _JPEG_OTHER_FRAMES:
            raise ImageConversionError('JPEG process SOF{} is not supported (baseline, '
                                       'extended or progressive only)'.format(marker - 0xC0))
        if marker in (0xD8, 0xD9, 0xDA) or length < 2:
            raise ImageConversionError('JPEG has no frame header before marker 0x{:02X}'.format(
                marker))
        offset += length
    raise ImageConversionError('JPEG ends before its frame header')


def compressed_image_size(msg):
    """(height, width) that a JPEG or PNG frame's header declares, without decoding it."""
    data = memoryview(msg.data).cast('B')
    height, width = (_png_size if compressed_format(msg) == 'png' else _jpeg_size)(data)
    if not height or not width:
        raise ImageConversionError('compressed frame declares an empty {}x{} image'.format(
            width, height))
    return height, width


_decoder_output_lock = threading.Lock()
_decoder_output = []  # [a temporary file], made on first use


def _decode_capturing_messages(data):
    """cv2.imdecode with fd 2 pointed at a temporary file; returns (image, decoder messages).

    libjpeg and libpng print from C, once per damaged frame. Other threads (DDS, logging)
    keep writing to fd 2 meanwhile: what is not a decoder message goes on to stderr, so
    nothing is lost. One decode at a time; without a usable fd 2 it just decodes."""
    with _decoder_output_lock:
        try:
            saved = os.dup(2)
        except OSError:
            return cv2.imdecode(data, cv2.IMREAD_COLOR), []
        if not _decoder_output:
            _decoder_output.append(tempfile.TemporaryFile())
        capture = _decoder_output[0].fileno()
        try:
            os.dup2(capture, 2)
            try:
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        written = os.lseek(capture, 0, os.SEEK_CUR)
        if not written:
            return image, []
        os.lseek(capture, 0, os.SEEK_SET)
        lines = os.read(capture, written).splitlines(True)
        os.lseek(capture, 0, os.SEEK_SET)
        os.ftruncate(capture, 0)
    messages = [line for line in lines if _DECODER_MESSAGE.match(line)]
    others = b''.join(line for line in lines if not _DECODER_MESSAGE.match(line))
    if others:
        os.write(2, others)
    return image, messages


def compressed_msg_to_rgb(msg, max_pixels=None):
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to a uint8 HxWx3 RGB array.

    The header is read first: a frame of more than max_pixels pixels raises OversizedImage
    before anything is decoded. Data that the decoder refuses or reports damaged raises
    ImageConversionError; the decoder's messages go into it, not to stderr."""
    height, width = compressed_image_size(msg)
    if max_pixels is not None and height * width > max_pixels:
        raise OversizedImage(height, width, max_pixels)
    try:
        bgr, messages = _decode_capturing_messages(np.frombuffer(msg.data, dtype=np.uint8))
    except cv2.error as error:  # e.g. more than OpenCV's CV_IO_MAX_IMAGE_PIXELS
        raise ImageConversionError('cannot decode compressed frame: {}'.format(
            str(error).strip().splitlines()[-1][:200]))
    damage = [line for line in messages if _DAMAGE_MESSAGE.match(line)]
    if bgr is None or damage:
        reason = (damage or messages or [b'the decoder refused it'])[0]
    elif bgr.shape[:2] != (height, width):
        reason = b'decoded %dx%d, its header says %dx%d' % (
            bgr.shape[1], bgr.shape[0], width, height)
    else:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise ImageConversionError('cannot decode compressed frame ({}, {} bytes): {}'.format(
        compressed_format(msg).upper(), len(msg.data),
        reason.decode('utf-8', 'replace').strip()[:200]))


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
