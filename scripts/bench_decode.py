"""The compressed input's cost per frame: image_conversion.compressed_msg_to_rgb (signature and
header checks, the decode with its messages captured) against a bare cv2.imdecode + cvtColor,
on camera-like 640x480 JPEG and PNG frames, interleaved in one run.

    source scripts/env.sh && python scripts/bench_decode.py [--blocks 40] [--calls 20]
"""
import argparse
import statistics
import time

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage

from ros_processes import camera_frames
from style_transfer_ros.image_conversion import compressed_msg_to_rgb


def bare_decode(msg):
    bgr = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def checked_decode(msg):
    return compressed_msg_to_rgb(msg, max_pixels=640 * 480)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--blocks', type=int, default=40, help='timed blocks per format and way')
    parser.add_argument('--calls', type=int, default=20, help='decodes per block')
    args = parser.parse_args()
    frame = cv2.cvtColor(camera_frames(480, 640, count=1)[0], cv2.COLOR_RGB2BGR)
    for extension, fmt in (('.jpg', 'rgb8; jpeg compressed bgr8'), ('.png', 'png')):
        msg = CompressedImage(format=fmt, data=cv2.imencode(extension, frame)[1].tobytes())
        assert np.array_equal(bare_decode(msg), checked_decode(msg))
        block_ms = {bare_decode: [], checked_decode: []}
        for block in range(args.blocks):
            # Interleaved blocks, each first every other time: both see the same load.
            for decode in (bare_decode, checked_decode)[::1 if block % 2 else -1]:
                start = time.perf_counter()
                for _ in range(args.calls):
                    decode(msg)
                block_ms[decode].append(1000.0 * (time.perf_counter() - start) / args.calls)
        (bare_min, bare_median), (checked_min, checked_median) = (
            (min(times), statistics.median(times))
            for times in (block_ms[bare_decode], block_ms[checked_decode]))
        print('%s, %d bytes: ms per frame (min / median of %d blocks) bare %.3f / %.3f, checked '
              '%.3f / %.3f, ratio %.3f / %.3f' % (
                  fmt, len(msg.data), args.blocks, bare_min, bare_median, checked_min,
                  checked_median, checked_min / bare_min, checked_median / bare_median))


if __name__ == '__main__':
    main()
