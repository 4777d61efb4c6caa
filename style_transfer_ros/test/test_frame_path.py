"""The node's frame path (frame_path) without a node: outputs as data and their lazy rules,
the one-slot mailbox, the buffer release after huge frames; and the one percentile."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip('std_msgs.msg')  # serialized_image reads headers into std_msgs/Header
from style_transfer_ros import frame_path  # noqa: E402
from style_transfer_ros.frame_statistics import FrameStatistics, percentile  # noqa: E402
from style_transfer_ros.image_conversion import serialize_image  # noqa: E402

FRAME = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
HEADER = SimpleNamespace(frame_id='cam', stamp=SimpleNamespace(sec=0, nanosec=0))


class Publisher(object):
    def __init__(self, subscribers):
        self.subscribers = subscribers
        self.published = []

    def get_subscription_count(self):
        return self.subscribers

    def publish(self, msg):
        self.published.append(msg)


class Inverter(object):
    def stylize(self, rgb, style_weights=None, strength=1.0):
        return 255 - rgb


def settings(**changes):
    values = dict(lazy=True, output_encoding='rgb8', jpeg_quality=90, max_input_pixels=10 ** 6)
    values.update(changes)
    return SimpleNamespace(**values)


def frames(image_subscribers, jpeg_subscribers):
    """A FramePath over two fake outputs; returns it, its publishers, statistics and the
    release requests it makes."""
    image, jpeg = Publisher(image_subscribers), Publisher(jpeg_subscribers)
    statistics, releases = FrameStatistics(), []
    path = frame_path.FramePath(
        [frame_path.image_output(image), frame_path.jpeg_output(jpeg)], False, statistics,
        lambda: 0, SimpleNamespace(warning=lambda message: None),
        lambda: releases.append(True), lambda: False)
    return path, image, jpeg, statistics, releases


ACTIVE = SimpleNamespace(stylizer=Inverter(), weights=None, strength=1.0)


@pytest.mark.parametrize('lazy, subscribers, wanted', [
    (True, 0, (False, False)), (False, 0, (True, False)), (True, 1, (True, True))])
def test_each_output_has_its_lazy_rule(lazy, subscribers, wanted):
    image, jpeg = (frame_path.image_output(None), frame_path.jpeg_output(None))
    assert (image.wanted(subscribers, settings(lazy=lazy)),
            jpeg.wanted(subscribers, settings(lazy=lazy))) == wanted


def test_a_frame_reaches_only_the_wanted_outputs_with_its_header():
    path, image, jpeg, statistics, _ = frames(image_subscribers=1, jpeg_subscribers=0)
    path.paint(serialize_image(FRAME, HEADER), settings(output_encoding='bgr8'), ACTIVE)
    assert image.published == [serialize_image(255 - FRAME, HEADER, 'bgr8')]
    assert jpeg.published == [] and statistics.totals['published'] == 1


def test_without_subscribers_a_lazy_node_paints_nothing():
    path, image, jpeg, statistics, _ = frames(0, 0)
    path.paint(serialize_image(FRAME, HEADER), settings(), ACTIVE)
    assert (statistics.totals['idle'], statistics.totals['published']) == (1, 0)
    path.paint(serialize_image(FRAME, HEADER), settings(lazy=False), ACTIVE)
    assert len(image.published) == 1 and not jpeg.published


def test_huge_frames_then_small_ones_ask_for_one_buffer_release():
    path, _, _, statistics, releases = frames(1, 0)
    huge = serialize_image(np.zeros((2400, 2400, 3), np.uint8), HEADER)  # 17 MB, oversized
    path.paint(huge, settings(), ACTIVE)
    assert statistics.totals['oversized'] == 1 and not releases
    for _ in range(3):
        path.paint(serialize_image(FRAME, HEADER), settings(), ACTIVE)
    assert releases == [True] and statistics.totals['published'] == 3


def test_the_mailbox_keeps_the_newest_frame_until_closed():
    mailbox = frame_path.Mailbox()
    assert mailbox.put('first') is False and mailbox.put('second') is True
    assert mailbox.take() == 'second'
    mailbox.put('third')
    mailbox.close()
    assert mailbox.take() is None


def test_percentile_is_the_nearest_rank():
    samples = list(range(20, 0, -1))
    assert (percentile(samples, 95), percentile(samples, 50), percentile(samples, 100)) == (
        19, 10, 20)
    assert percentile([7.0], 95) == 7.0 and math.isnan(percentile([], 95))
