"""Soak: the node with its default parameters under a steady camera for minutes, then huge frames.

Prints the node's RSS (at 1 minute and at the end), output fps and latency p95 per minute, and
the RSS after one 3000x3000 and one 8000x8000 frame. Source scripts/env.sh first (DDS stays on
loopback).

    python scripts/soak.py --minutes 10 --fps 30
"""
import argparse
import json
import os
import time

import numpy as np

from ros_processes import REPO, CameraProcess, NodeProcess, StylizerClient
from style_transfer_ros.frame_statistics import percentile


def publish_huge_frame(monitor, topic, side, diagnostics_key, timeout=60.0):
    """Publish one side x side rgb8 frame (reliable, so it arrives whole) until the node's
    diagnostics count it under diagnostics_key; return whether they did."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from style_transfer_ros.image_conversion import rgb_to_image_msg

    publisher = monitor.node.create_publisher(
        Image, topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    msg = rgb_to_image_msg(np.full((side, side, 3), 127, np.uint8), Header(frame_id='huge'))
    before = len(monitor.diagnostics)
    count_before = int(monitor.diagnostics[-1][1][diagnostics_key])
    start = time.monotonic()

    def counted():
        return any(int(values[diagnostics_key]) > count_before
                   for _, values in monitor.diagnostics[before:])

    while time.monotonic() - start < timeout and not counted():
        publisher.publish(msg)
        time.sleep(2.0)  # one frame per diagnostics period; the node keeps only the newest
    monitor.node.destroy_publisher(publisher)
    return counted()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--fps', type=float, default=30.0, help='camera rate')
    parser.add_argument('--style', default='starry_night')
    parser.add_argument('--output', default=os.path.join(REPO, 'build', 'soak.json'))
    args = parser.parse_args()

    log_dir = os.path.join(REPO, 'build', 'soak')
    os.makedirs(log_dir, exist_ok=True)
    namespace = '/soak_%d' % os.getpid()
    node = NodeProcess({'style': args.style, 'diagnostics_period': 1.0},
                       os.path.join(log_dir, 'node.log'), namespace=namespace)
    monitor = StylizerClient(namespace)
    camera = None
    minutes, result = [], {}
    try:
        node.wait_for_service(monitor.list_styles)
        result['rss_mb_idle'] = round(node.memory_mb(), 1)
        camera = CameraProcess(namespace + '/image', args.fps, os.path.join(log_dir, 'camera.log'))
        start = time.monotonic()
        while time.monotonic() - start < 60.0 * args.minutes:
            window_start = time.monotonic()
            time.sleep(min(60.0, 60.0 * args.minutes - (window_start - start)))
            latencies = [ms for t, ms in monitor.received if t >= window_start]
            minutes.append({'minute': len(minutes) + 1, 'rss_mb': round(node.memory_mb(), 1),
                            'output_fps': round(len(latencies) / (time.monotonic() - window_start),
                                                1),
                            'latency_ms_p95': round(percentile(latencies, 95), 1)})
            print(json.dumps(minutes[-1]), flush=True)
        camera.stop()
        camera = None
        result['peak_rss_mb_soak'] = round(node.memory_mb('VmHWM'), 1)
        for side, key in ((3000, 'published_frames'), (8000, 'oversized_frames')):
            arrived = publish_huge_frame(monitor, namespace + '/image', side, key)
            result['rss_mb_after_%dx%d' % (side, side)] = round(node.memory_mb(), 1)
            result['%dx%d_counted_as_%s' % (side, side, key)] = arrived
        result['peak_rss_mb'] = round(node.memory_mb('VmHWM'), 1)
    finally:
        if camera is not None:
            camera.stop()
        result['node_exit_code'] = node.stop()
        monitor.close()
    result['minutes'] = minutes
    print(json.dumps(result, indent=2))
    with open(args.output, 'w') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
