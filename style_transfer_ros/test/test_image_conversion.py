"""sensor_msgs/Image <-> numpy conversion, checked against known pixel values and OpenCV."""
import os

import cv2
import numpy as np
import pytest

pytest.importorskip('sensor_msgs.msg')
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

import hostile_images  # noqa: E402
from style_transfer_ros import image_conversion, serialized_image  # noqa: E402
from style_transfer_ros.image_conversion import (  # noqa: E402
    ImageConversionError, SUPPORTED_ENCODINGS, image_msg_to_rgb, rgb_to_image_msg)

# 2x4 RGB frame: red, green, blue, white / black, grey, yellow, cyan
RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]],
                [[0, 0, 0], [128, 128, 128], [255, 255, 0], [0, 255, 255]]], np.uint8)


def make_msg(encoding, pixels, padding=0, bigendian=0):
    """An Image whose rows are pixels' bytes followed by `padding` junk bytes."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], padding), 0xAB, np.uint8)
    msg = Image()
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = bigendian
    msg.step = rows.shape[1] + padding
    msg.data = np.hstack([rows, junk]).tobytes()
    return msg


def colour_frames():
    alpha = np.full(RGB.shape[:2] + (1,), 200, np.uint8)
    return {
        'rgb8': RGB,
        'bgr8': RGB[..., ::-1],
        'rgba8': np.concatenate([RGB, alpha], axis=2),
        'bgra8': np.concatenate([RGB[..., ::-1], alpha], axis=2),
    }


@pytest.mark.parametrize('padding', [0, 3])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
def test_colour_encodings(encoding, padding):
    rgb = image_msg_to_rgb(make_msg(encoding, colour_frames()[encoding], padding))
    assert rgb.dtype == np.uint8 and rgb.flags['C_CONTIGUOUS']
    assert np.array_equal(rgb, RGB)


def test_rgb8_result_does_not_alias_the_message():
    msg = make_msg('rgb8', RGB)
    rgb = image_msg_to_rgb(msg)
    rgb[0, 0] = 7
    assert msg.data[0] == 255


@pytest.mark.parametrize('padding', [0, 5])
def test_mono8(padding):
    grey = np.array([[0, 17, 128, 255]], np.uint8)
    rgb = image_msg_to_rgb(make_msg('mono8', grey, padding))
    assert rgb.shape == (1, 4, 3)
    assert np.array_equal(rgb, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize('padding', [0, 2])
@pytest.mark.parametrize('bigendian', [0, 1])
def test_mono16_keeps_the_high_byte(bigendian, padding):
    values = np.array([[0x0000, 0x12FF, 0xAB01, 0xFFFF]], np.uint16)
    pixels = values.astype('>u2' if bigendian else '<u2')
    rgb = image_msg_to_rgb(make_msg('mono16', pixels, padding, bigendian))
    assert rgb[0, :, 0].tolist() == [0x00, 0x12, 0xAB, 0xFF]
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize('encoding, order', [('yuv422', 'uyvy'), ('uyvy', 'uyvy'),
                                             ('yuv422_yuy2', 'yuyv'), ('yuyv', 'yuyv')])
def test_yuv422_known_values(encoding, order):
    # Video-range BT.601: Y=16 is black, Y=235 white; U=V=128 is grey.
    pairs = [(16, 128, 235, 128), (126, 128, 126, 128)]
    data = []
    for y0, u, y1, v in pairs:
        data += [u, y0, v, y1] if order == 'uyvy' else [y0, u, y1, v]
    msg = make_msg(encoding, np.array(data, np.uint8).reshape(1, 4, 2))
    rgb = image_msg_to_rgb(msg)
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert np.all(np.abs(rgb[0, 2:].astype(int) - 128) <= 1)


@pytest.mark.parametrize('padding', [0, 4])
@pytest.mark.parametrize('encoding, code', [('yuv422', cv2.COLOR_YUV2RGB_UYVY),
                                            ('yuv422_yuy2', cv2.COLOR_YUV2RGB_YUY2)])
def test_yuv422_matches_opencv(encoding, code, padding):
    packed = np.random.RandomState(1).randint(0, 256, (6, 8, 2)).astype(np.uint8)
    rgb = image_msg_to_rgb(make_msg(encoding, packed, padding))
    assert np.array_equal(rgb, cv2.cvtColor(packed, code))


def test_supported_encodings():
    assert set(SUPPORTED_ENCODINGS) == {'rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16',
                                        'yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'}


def bad_frames():
    unknown = make_msg('rgb8', RGB)
    unknown.encoding = '32FC1'
    empty = make_msg('rgb8', RGB)
    empty.width = 0
    short = make_msg('rgb8', RGB)
    short.data = short.data[:-1]
    narrow = make_msg('rgb8', RGB)
    narrow.step = 11
    narrow.data = bytes(22)
    odd = make_msg('yuv422', np.zeros((2, 3, 2), np.uint8))
    return [(unknown, 'unsupported encoding'), (empty, 'empty frame'),
            (short, 'data has 23 bytes, expected height 2 x step 12'),
            (narrow, 'step 11 is smaller than width 4 x 3'), (odd, 'even width')]


@pytest.mark.parametrize('msg, reason', bad_frames())
def test_bad_frames_raise(msg, reason):
    with pytest.raises(ImageConversionError, match=reason):
        image_msg_to_rgb(msg)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8'])
def test_rgb_to_image_msg_round_trip(encoding):
    header = Header(frame_id='camera')
    header.stamp.sec, header.stamp.nanosec = 12, 34
    rgb = np.random.RandomState(2).randint(0, 256, (5, 7, 3)).astype(np.uint8)
    msg = rgb_to_image_msg(rgb, header, encoding)
    assert msg.header is header and msg.header.stamp.sec == 12
    assert (msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian) == (
        5, 7, 21, encoding, 0)
    first_pixel = rgb[0, 0].tolist() if encoding == 'rgb8' else rgb[0, 0, ::-1].tolist()
    assert list(msg.data[:3]) == first_pixel
    assert np.array_equal(image_msg_to_rgb(msg), rgb)


def test_rgb_to_image_msg_rejects_bad_input():
    with pytest.raises(ImageConversionError, match='output encoding'):
        rgb_to_image_msg(RGB, Header(), 'mono8')
    with pytest.raises(ImageConversionError, match='uint8 HxWx3'):
        rgb_to_image_msg(RGB.astype(np.float32), Header())


def test_conversion_matches_cv_bridge():
    """Where ROS 2 cv_bridge is installed (a robot's colcon test), it converts as we do."""
    bridge = pytest.importorskip('cv_bridge').CvBridge()
    for encoding, channels in (('rgb8', 3), ('bgr8', 3), ('rgba8', 4), ('bgra8', 4),
                               ('mono8', 1), ('yuv422', 2), ('yuv422_yuy2', 2)):
        pixels = np.random.RandomState(3).randint(0, 256, (3, 4, channels)).astype(np.uint8)
        for padding in (0, 2):
            msg = make_msg(encoding, pixels, padding)
            expected = bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8')
            assert np.array_equal(image_msg_to_rgb(msg), expected), (encoding, padding)


def test_oversized_frames_are_not_converted(monkeypatch):
    monkeypatch.setattr(image_conversion, '_check_layout', None)  # must not be reached
    with pytest.raises(image_conversion.OversizedImage) as error:
        image_msg_to_rgb(make_msg('rgb8', RGB), max_pixels=7)
    assert error.value.pixels == 8


@pytest.mark.parametrize('frame_id', ['', 'c', 'cam', 'camera_optical_frame'])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8'])
def test_serialized_image_reads_what_rclpy_writes(frame_id, encoding):
    from rclpy.serialization import serialize_message
    pixels = colour_frames()[encoding]
    msg = make_msg(encoding, pixels, padding=3)
    msg.header = Header(frame_id=frame_id)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 56789
    parsed = serialized_image.read(serialize_message(msg))
    assert parsed.header == msg.header
    assert (parsed.height, parsed.width, parsed.encoding, parsed.step) == (
        msg.height, msg.width, encoding, msg.step)
    assert np.array_equal(image_msg_to_rgb(parsed, copy=False), image_msg_to_rgb(msg))


def test_serialized_rgb8_is_read_in_place():
    from rclpy.serialization import serialize_message
    buffer = bytearray(serialize_message(make_msg('rgb8', RGB)))
    _, view = image_conversion.serialized_msg_to_rgb(buffer)
    buffer[-1] ^= 0xFF  # the last pixel's blue byte, in the buffer
    assert view[-1, -1, 2] == RGB[-1, -1, 2] ^ 0xFF


def test_truncated_serialized_image_is_a_conversion_error():
    from rclpy.serialization import serialize_message
    data = serialize_message(make_msg('rgb8', RGB))
    with pytest.raises(ImageConversionError):
        image_conversion.serialized_msg_to_rgb(data[:-5])


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8'])
def test_serialize_image_is_what_rclpy_reads(encoding):
    from rclpy.serialization import deserialize_message
    header = Header(frame_id='camera_optical')
    header.stamp.sec, header.stamp.nanosec = 7, 8
    data = image_conversion.serialize_image(RGB, header, encoding)
    msg = deserialize_message(data, Image)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
        7, 8, 'camera_optical')
    assert (msg.height, msg.width, msg.encoding, msg.step) == (2, 4, encoding, 12)
    assert np.array_equal(image_msg_to_rgb(msg), RGB)


def test_compressed_round_trip_is_close():
    smooth = cv2.resize(RGB, (64, 32), interpolation=cv2.INTER_LINEAR)
    msg = image_conversion.rgb_to_compressed_msg(smooth, Header(frame_id='cam'), 95)
    assert msg.format == 'rgb8; jpeg compressed bgr8' and msg.header.frame_id == 'cam'
    decoded = image_conversion.compressed_msg_to_rgb(msg)
    assert decoded.shape == smooth.shape
    assert np.abs(decoded.astype(int) - smooth).mean() < 6


def test_undecodable_compressed_frame_is_a_conversion_error():
    with pytest.raises(ImageConversionError):
        image_conversion.compressed_msg_to_rgb(CompressedImage(format='jpeg', data=b'\x00' * 9))


@pytest.mark.parametrize('data, fmt', [
    (hostile_images.encoded('.jpg'), 'jpeg'),
    (hostile_images.encoded('.jpg'), 'rgb8; jpeg compressed bgr8'),
    (hostile_images.encoded('.png'), 'png'),
    (hostile_images.encoded('.png'), 'bgr8; png compressed bgr8'),
    (hostile_images.encoded('.png'), ''),
])
def test_jpeg_and_png_are_decoded_in_any_image_transport_format(data, fmt):
    rgb = image_conversion.compressed_msg_to_rgb(CompressedImage(format=fmt, data=data))
    assert rgb.shape == (96, 128, 3)
    assert np.abs(rgb.astype(int) - hostile_images.smooth_frame(96, 128)).mean() < 3


@pytest.mark.parametrize('kind', sorted(hostile_images.OTHER_FORMATS))
def test_other_formats_are_refused(kind):
    msg = CompressedImage(format=kind, data=hostile_images.OTHER_FORMATS[kind])
    with pytest.raises(ImageConversionError, match='neither JPEG nor PNG'):
        image_conversion.compressed_msg_to_rgb(msg)


def test_data_must_match_its_format():
    msg = CompressedImage(format='png', data=hostile_images.encoded('.jpg'))
    with pytest.raises(ImageConversionError, match="format 'png' does not match"):
        image_conversion.compressed_msg_to_rgb(msg)


@pytest.mark.parametrize('data, size', [
    (hostile_images.png_bomb(20000), (20000, 20000)),
    (hostile_images.png_declaring(100000, 100000), (100000, 100000)),
    (hostile_images.jpeg_declaring(20000, 15000), (15000, 20000)),
    (hostile_images.jpeg_declaring(20000, 15000, progressive=True), (15000, 20000)),
])
def test_headers_declare_the_size_and_big_frames_are_not_decoded(data, size, monkeypatch):
    msg = CompressedImage(format='', data=data)
    assert image_conversion.compressed_image_size(msg) == size
    monkeypatch.setattr(image_conversion.cv2, 'imdecode', None)  # must not be reached
    with pytest.raises(image_conversion.OversizedImage) as error:
        image_conversion.compressed_msg_to_rgb(msg, max_pixels=640 * 480)
    assert error.value.pixels == size[0] * size[1]


def test_what_the_decoder_refuses_is_a_conversion_error():
    """OpenCV raises cv2.error beyond CV_IO_MAX_IMAGE_PIXELS (2**30 by default)."""
    msg = CompressedImage(format='png', data=hostile_images.png_declaring(40000, 40000))
    with pytest.raises(ImageConversionError, match='cannot decode'):
        image_conversion.compressed_msg_to_rgb(msg, max_pixels=2 ** 31 - 1)


@pytest.mark.parametrize('data, fmt, reason', [
    (hostile_images.truncated_png(), 'png', 'PNG input buffer is incomplete'),
    (hostile_images.corrupt_jpeg(), 'jpeg', 'Corrupt JPEG data'),
])
def test_damaged_frames_raise_with_the_decoder_message_off_stderr(data, fmt, reason, capfd):
    with pytest.raises(ImageConversionError, match=reason):
        image_conversion.compressed_msg_to_rgb(CompressedImage(format=fmt, data=data))
    captured = capfd.readouterr()
    assert reason not in captured.err and reason not in captured.out


def test_other_threads_output_during_a_decode_reaches_stderr(monkeypatch, capfd):
    decode = image_conversion.cv2.imdecode

    def noisy_decode(data, flags):
        os.write(2, b'[WARN] [1.0] [other_thread]: still here\n')
        os.write(2, b'Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\n')
        return decode(data, flags)

    monkeypatch.setattr(image_conversion.cv2, 'imdecode', noisy_decode)
    with pytest.raises(ImageConversionError, match='extraneous bytes'):
        image_conversion.compressed_msg_to_rgb(
            CompressedImage(format='jpeg', data=hostile_images.encoded('.jpg')))
    err = capfd.readouterr().err
    assert '[other_thread]: still here' in err and 'Corrupt JPEG' not in err
