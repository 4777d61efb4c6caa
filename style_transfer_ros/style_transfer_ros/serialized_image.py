"""The CDR wire format of sensor_msgs/Image: read a serialized message in place, write one.

Bytes and fields only; pixels stay a buffer here (image_conversion turns them into arrays).
The node's raw subscription hands over serialized frames, so `read` gives the pixels to the
network without a copy, and `write` builds the stylized frame with one copy; rclpy's own
conversion copies the pixels three times each way.
"""
import struct

# An encapsulation header, then fields aligned to their size counted from its end.
_LITTLE_ENDIAN = b'\x00\x01\x00\x00'
_HEADER_SIZE = 4


class TruncatedMessage(ValueError):
    """The buffer ends inside a field."""


class SerializedImage(object):
    """The fields of a serialized sensor_msgs/Image: `header` is a std_msgs/Header, `data` a
    view of the buffer."""

    __slots__ = ('header', 'height', 'width', 'encoding', 'is_bigendian', 'step', 'data')


class _Reader(object):
    def __init__(self, buffer):
        self.view = memoryview(buffer)
        self.offset = _HEADER_SIZE

    def take(self, size, align):
        self.offset += -(self.offset - _HEADER_SIZE) % align
        end = self.offset + size
        if end > len(self.view):
            raise TruncatedMessage('truncated image message ({} bytes)'.format(len(self.view)))
        start, self.offset = self.offset, end
        return self.view[start:end]

    def uint32(self):
        return struct.unpack('<I', self.take(4, 4))[0]

    def int32(self):
        return struct.unpack('<i', self.take(4, 4))[0]

    def string(self):
        raw = self.take(self.uint32(), 1)
        return bytes(raw[:-1]).decode('utf-8', 'replace')  # the length counts the NUL

    def uint8(self):
        return self.take(1, 1)[0]


def read(buffer):
    """The SerializedImage in `buffer` (from a raw subscription), its pixels not copied."""
    from std_msgs.msg import Header
    image = SerializedImage()
    if bytes(buffer[:_HEADER_SIZE]) != _LITTLE_ENDIAN:  # rare: let rclpy decode it
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image
        msg = deserialize_message(bytes(buffer), Image)
        for field in SerializedImage.__slots__:
            setattr(image, field, getattr(msg, field))
        return image
    reader = _Reader(buffer)
    image.header = Header()
    image.header.stamp.sec, image.header.stamp.nanosec = reader.int32(), reader.uint32()
    image.header.frame_id = reader.string()
    image.height, image.width = reader.uint32(), reader.uint32()
    image.encoding = reader.string()
    image.is_bigendian = reader.uint8()
    image.step = reader.uint32()
    image.data = reader.take(reader.uint32(), 1)
    return image


def _string(text):
    """A CDR string: its length counting the NUL, its bytes, the NUL (starts 4-aligned)."""
    encoded = text.encode('utf-8') + b'\x00'
    return struct.pack('<I', len(encoded)) + encoded


def write(header, height, width, encoding, step, pixels):
    """A serialized little-endian sensor_msgs/Image, as bytes for Publisher.publish.

    header: anything with stamp.sec, stamp.nanosec and frame_id (a std_msgs/Header, or a
    rosbags one); pixels: a buffer of height x step bytes, copied once."""
    head = struct.pack('<iI', header.stamp.sec, header.stamp.nanosec) + _string(header.frame_id)
    head += b'\x00' * (-len(head) % 4) + struct.pack('<II', height, width)
    head += _string(encoding) + b'\x00'  # is_bigendian
    head += b'\x00' * (-len(head) % 4) + struct.pack('<II', step, height * step)
    return b''.join((_LITTLE_ENDIAN, head, pixels))
