"""Compressed frames an attacker or a damaged link sends: decompression bombs, truncated and
corrupt data, formats the node does not accept. Made in memory, in well under a second."""
import struct
import zlib

import cv2
import numpy as np

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# The first bytes of formats OpenCV decodes but the node must refuse.
OTHER_FORMATS = {
    'gif': b'GIF89a\x10\x00\x10\x00\x80\x00\x00',
    'bmp': b'BM' + b'\x00' * 52,
    'tiff': b'II*\x00' + b'\x00' * 60,
    'webp': b'RIFF\x24\x00\x00\x00WEBPVP8 ' + b'\x00' * 40,
    'ppm': b'P6\n16 16\n255\n' + b'\x00' * 768,
    'jpeg2000': b'\x00\x00\x00\x0cjP  \r\n\x87\n' + b'\x00' * 40,
}


def _chunk(kind, payload):
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_bomb(side):
    """A side x side PNG, 1-bit palette, all one colour: ~48 KB for 20000 x 20000."""
    row = b'\x00' + b'\x00' * ((side + 7) // 8)  # filter byte, then the packed pixels
    compressor = zlib.compressobj(9)
    idat = b''.join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (PNG_SIGNATURE + _chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 1, 3, 0, 0, 0))
            + _chunk(b'PLTE', b'\x20\x40\x80') + _chunk(b'IDAT', idat) + _chunk(b'IEND', b''))


def png_declaring(width, height):
    """A tiny PNG (~200 bytes) whose header declares width x height."""
    data = bytearray(cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def jpeg_declaring(width, height, progressive=False):
    """A small real JPEG whose frame header (SOF0 or SOF2) is rewritten to width x height."""
    data = bytearray(cv2.imencode('.jpg', smooth_frame(64, 64), [
        cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes())
    offset = 2
    while data[offset + 1] not in (0xC0, 0xC2):
        offset += 2 + struct.unpack('>H', bytes(data[offset + 2:offset + 4]))[0]
    data[offset + 5:offset + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def smooth_frame(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([255 * x // max(width - 1, 1), 255 * y // max(height - 1, 1),
                     np.full((height, width), 90)], axis=-1).astype(np.uint8)


def encoded(extension, height=96, width=128):
    """smooth_frame (RGB) as a JPEG or PNG."""
    bgr = cv2.cvtColor(smooth_frame(height, width), cv2.COLOR_RGB2BGR)
    return cv2.imencode(extension, bgr)[1].tobytes()


def truncated_png():
    data = encoded('.png')
    return data[:len(data) // 2]


def corrupt_jpeg():
    """A JPEG whose entropy-coded scan has 200 random bytes: libjpeg decodes it, warning."""
    data = bytearray(encoded('.jpg', 240, 320))
    noise = np.random.RandomState(0).randint(0, 255, 200).astype(np.uint8)
    middle = len(data) // 2
    data[middle:middle + 200] = noise.tobytes()
    return bytes(data)
