"""One frame's way through the node: the mailbox it waits in, the worker that reads it,
stylizes it with the ActiveStyle and publishes it to each output someone wants, and the
counts the diagnostics report.

Plain Python like the Stylizer (no rclpy import): the node hands in its publishers (anything
with publish and get_subscription_count), its clock, its logger and a trigger for the buffer
release, and keeps the ROS wiring. Every output is one Output entry, so a new one is a line
where the node wires its publisher.
"""
import threading
import time

from style_transfer_ros.image_conversion import (ImageConversionError, OversizedImage,
                                                 compressed_msg_to_rgb, rgb_to_compressed_msg,
                                                 serialize_image, serialized_msg_to_rgb)
from style_transfer_ros.stylizer import RELEASE_FACTOR

WARNING_PERIOD = 5.0  # seconds between two warnings of one kind
RELEASE_BYTES = 16 * 2 ** 20  # frames above this (full HD is 6 MB) leave buffers behind


class ActiveStyle(object):
    """What the worker paints with; replaced as a whole, never mutated."""

    def __init__(self, stylizer, selection, strength):
        self.stylizer = stylizer
        self.selection = selection
        self.strength = strength
        self.weights = selection.weights_for(stylizer.num_styles)  # raises SelectionError

    def describe(self):
        text = self.selection.description
        if self.strength < 1.0:
            text += ' @ strength %.2f' % self.strength
        return text


class Output(object):
    """One stylized topic: its publisher, its encoder (stylized RGB, input header, settings ->
    message) and its lazy rule: published while someone subscribes, and also without
    subscribers if it follows the `lazy` parameter and that is off."""

    def __init__(self, publisher, encode, follows_lazy):
        self.publisher = publisher  # replaced whole by the node's buffer release
        self.encode = encode
        self.follows_lazy = follows_lazy

    def wanted(self, subscribers, settings):
        return bool(subscribers) or (self.follows_lazy and not settings.lazy)


def image_output(publisher):
    """image_stylized: a serialized sensor_msgs/Image in the output_encoding parameter."""
    return Output(publisher, lambda rgb, header, settings: serialize_image(
        rgb, header, settings.output_encoding), follows_lazy=True)


def jpeg_output(publisher):
    """image_stylized/compressed: JPEG at jpeg_quality, only while someone subscribes."""
    return Output(publisher, lambda rgb, header, settings: rgb_to_compressed_msg(
        rgb, header, settings.jpeg_quality), follows_lazy=False)


class Mailbox(object):
    """One slot between the subscription and the worker: the newest frame waits there, and
    one that arrives while the model is busy replaces it, so no backlog builds up."""

    def __init__(self):
        self._condition = threading.Condition()
        self._frame = None
        self._open = True

    def put(self, frame):
        """Leave a frame for the worker; True if it replaced one (a dropped frame)."""
        with self._condition:
            replaced, self._frame = self._frame is not None, frame
            self._condition.notify()
        return replaced

    def take(self):
        """Wait for the next frame; None once the mailbox is closed."""
        with self._condition:
            while self._open and self._frame is None:
                self._condition.wait()
            frame, self._frame = self._frame, None
        return frame if self._open else None

    def close(self):
        with self._condition:
            self._open = False
            self._condition.notify_all()


class FramePath(object):
    """The node's frames from its subscription to its outputs: a Mailbox, and a worker
    thread that paints what it takes, one frame at a time."""

    def __init__(self, outputs, compressed_input, statistics, now_ns, logger, release_buffers,
                 stopping):
        """outputs: Output entries; compressed_input: frames are CompressedImage messages,
        else serialized Images; now_ns: the node clock in ns; release_buffers: asks the
        executor to renew what holds a huge frame's memory; stopping: True once rclpy shuts
        down."""
        self.outputs, self._compressed_input = outputs, compressed_input
        self._statistics, self._now_ns, self._logger = statistics, now_ns, logger
        self._release_buffers, self._stopping = release_buffers, stopping
        self._largest_frame_bytes = 0  # since the last release (see _watch_frame_size)
        self._last_warning = {}  # kind -> (monotonic time, warnings held back since)
        self._mailbox = Mailbox()
        self._worker = None
        self.painting = threading.Lock()  # held by the worker while it paints a frame

    def start(self, state):
        """Start the worker; state() gives the (settings, active style) of each frame."""
        self._worker = threading.Thread(target=self._work, args=(state,), name='stylizer',
                                        daemon=True)
        self._worker.start()

    def offer(self, msg):
        """The subscription's callback: count the frame and leave it for the worker."""
        self._statistics.count('received')
        if self._mailbox.put(msg):
            self._statistics.count('dropped')

    def stop(self, timeout=5.0):
        self._mailbox.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=timeout)

    def _work(self, state):
        for msg in iter(self._mailbox.take, None):
            try:
                with self.painting:
                    self.paint(msg, *state())  # one consistent state per frame
            except Exception:
                if self._stopping():  # SIGINT/SIGTERM shut rclpy down under us
                    return
                raise

    def subscribers(self):
        """The subscriber count of each output, in order."""
        return [output.publisher.get_subscription_count() for output in self.outputs]

    def paint(self, msg, settings, active):
        """Count and paint one frame; a bad frame or a failing model never stops the worker."""
        wanted = [output for output, subscribers in zip(self.outputs, self.subscribers())
                  if output.wanted(subscribers, settings)]
        if not wanted:
            self._statistics.count('idle')
            return
        pixels = 0
        try:
            pixels = self._publish(msg, settings, active, wanted)
        except OversizedImage as error:
            self._statistics.count('oversized')
            self._warn_throttled('oversized', 'dropping a %d-pixel frame: max_input_pixels is %d'
                                 % (error.pixels, settings.max_input_pixels))
        except ImageConversionError as error:
            self._statistics.count('bad', str(error))
            self._warn_throttled('bad frame', 'dropping bad frame: %s' % error)
        except Exception as error:  # keep painting whatever a model throws
            if self._stopping():
                raise
            self._statistics.count('failed', repr(error))
            self._warn_throttled('failure', 'frame failed: %r' % (error,))
        self._watch_frame_size(max(3 * pixels, len(msg.data if self._compressed_input else msg)))

    def _publish(self, msg, settings, active, outputs):
        """Paint one frame and publish it to `outputs`; return the pixels of its largest
        image."""
        if self._compressed_input:
            header = msg.header
            rgb = compressed_msg_to_rgb(msg, max_pixels=settings.max_input_pixels)
        else:
            header, rgb = serialized_msg_to_rgb(msg, max_pixels=settings.max_input_pixels)
        started = time.monotonic()
        stylized = active.stylizer.stylize(rgb, style_weights=active.weights,
                                           strength=active.strength)
        self._statistics.add_time('inference_ms', 1000.0 * (time.monotonic() - started))
        for output in outputs:
            output.publisher.publish(output.encode(stylized, header, settings))
        stamp = header.stamp
        if stamp.sec or stamp.nanosec:
            self._statistics.add_time(
                'latency_ms', (self._now_ns() - (stamp.sec * 10 ** 9 + stamp.nanosec)) / 1e6)
        self._statistics.count('published')
        return max(rgb.shape[0] * rgb.shape[1], stylized.shape[0] * stylized.shape[1])

    def _watch_frame_size(self, frame_bytes):
        """Once frames are RELEASE_FACTOR times smaller than the largest one since the last
        release (if that was over RELEASE_BYTES), have the executor give back its memory."""
        if frame_bytes > self._largest_frame_bytes:
            self._largest_frame_bytes = frame_bytes
        elif (self._largest_frame_bytes > RELEASE_BYTES
              and frame_bytes * RELEASE_FACTOR < self._largest_frame_bytes):
            self._largest_frame_bytes = frame_bytes
            self._release_buffers()

    def _warn_throttled(self, kind, message):
        """Warn at most once per WARNING_PERIOD per kind, saying how many of that kind were
        held back."""
        now = time.monotonic()
        last, held = self._last_warning.get(kind, (-WARNING_PERIOD, 0))
        if now - last < WARNING_PERIOD:
            self._last_warning[kind] = (last, held + 1)
            return
        if held:
            message += ' (and %d more like it since the last warning)' % held
        self._last_warning[kind] = (now, 0)
        self._logger.warning(message)
