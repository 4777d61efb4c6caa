"""The recordings the stylize command reads and writes: images, videos and ROS 2 bags.

Each kind yields Frames (read on the pipeline's decoder thread) and gives a writer that lives
on its encoder thread from the first write to close() or abort(). Images and videos need only
OpenCV (Python 3.6 on the Jetson Nano too); a video keeps its audio when PyAV (`av`) is
installed. Bags need rosbags (Python >= 3.10). Messages go through image_conversion, the node's
own conversion.
"""
import contextlib
import heapq
import os
import shutil
import sys
import tempfile

import cv2
import numpy as np

from style_transfer_ros.image_conversion import (COMPRESSED_FORMAT, OUTPUT_ENCODINGS,
                                                 compressed_msg_to_rgb, image_msg_to_rgb,
                                                 rgb_to_jpeg, serialize_image)

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
WRITTEN_IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
# Output extension -> the FourCC OpenCV's FFmpeg encodes it with by default.
VIDEO_CODECS = {'.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.mkv': 'mp4v',
                '.avi': 'MJPG', '.webm': 'VP80'}
BAG_FILES = {'.db3': 'sqlite3', '.mcap': 'mcap'}  # a bag's storage file -> its plugin
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
ROSBAG2_VERSION = 8  # the oldest format rosbags writes
STYLIZED_SUFFIX = '_stylized'


class RecordingError(Exception):
    """A recording that cannot be read or written; the message is one line saying why."""


class Frame(object):
    """One item of a recording: rgb to stylize, or None for an item passed through as it is
    (a bag's other topics) and for a corrupt frame (error says why); item is what the writer
    needs besides the pixels."""

    __slots__ = ('rgb', 'item', 'error')

    def __init__(self, rgb, item=None, error=None):
        self.rgb = rgb
        self.item = item
        self.error = error


def _bgr_to_rgb(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _rgb_to_bgr(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _stem_and_extension(path):
    return os.path.splitext(os.path.basename(os.path.normpath(path)))


def _default_output(path, extension):
    stem, _ = _stem_and_extension(path)
    return os.path.join(os.path.dirname(os.path.abspath(path)), stem + STYLIZED_SUFFIX + extension)


def refuse_existing(output, overwrite):
    if os.path.lexists(output) and not overwrite:
        raise RecordingError('%s exists; give --overwrite to replace it' % output)


@contextlib.contextmanager
def staged_output(output, overwrite):
    """Yield a path to write output at; it becomes output only when the block completes.

    The path lies in a hidden `.<name>.partial-*` folder next to output, removed whatever
    happens, so an interrupted run leaves nothing that looks like a finished file."""
    output = os.path.abspath(output)
    refuse_existing(output, overwrite)
    parent, name = os.path.split(output)
    if not os.path.isdir(parent):
        raise RecordingError('the output folder %s does not exist' % parent)
    stage = tempfile.mkdtemp(prefix='.%s.partial-' % name, dir=parent)
    try:
        yield os.path.join(stage, name)
        if os.path.lexists(output):
            os.rename(output, os.path.join(stage, 'replaced'))
        os.rename(os.path.join(stage, name), output)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def open_recording(path, options):
    """The Images, Video or Bag at path; options: the stylize command's arguments."""
    if not os.path.exists(path):
        raise RecordingError('%s does not exist' % path)
    extension = _stem_and_extension(path)[1].lower()
    if extension == '.bag':
        raise RecordingError('%s is a ROS 1 bag; convert it to a ROS 2 bag first (rosbags-convert '
                             '--src %s --dst %s_ros2)' % (path, path, path[:-4]))
    if extension in BAG_FILES or os.path.isfile(os.path.join(path, 'metadata.yaml')):
        return Bag(path, options)
    if os.path.isdir(path) or extension in IMAGE_EXTENSIONS:
        return Images(path, options)
    return Video(path, options)


# ---------------------------------------------------------------- images
class Images(object):
    """An image file (output: an image file) or a folder of them (output: a folder with the
    same names; PNG unless an image is JPEG or PNG already)."""

    kind = 'images'

    def __init__(self, path, options):
        self.path = path
        self.jpeg_quality = options.jpeg_quality
        self.notes = []  # one line each, for the summary (none for images)
        self.folder = os.path.isdir(path)
        if self.folder:
            self.files = sorted(name for name in os.listdir(path)
                                if _stem_and_extension(name)[1].lower() in IMAGE_EXTENSIONS)
            if not self.files:
                raise RecordingError('%s holds no images (%s)' % (
                    path, ', '.join(IMAGE_EXTENSIONS)))
            written = {}
            for name in self.files:
                other = written.setdefault(_written_name(name), name)
                if other != name:
                    raise RecordingError('%s: %s and %s would both be written as %s' % (
                        path, other, name, _written_name(name)))
        else:
            self.files = [os.path.basename(path)]
            self._first = self._read(path)
            if self._first is None:
                raise RecordingError('cannot decode %s: not an image OpenCV reads' % path)
        self.total = len(self.files)

    def default_output(self):
        if self.folder:
            return _default_output(self.path, '')
        extension = _stem_and_extension(self.path)[1].lower()
        return _default_output(self.path, extension if extension in WRITTEN_IMAGE_EXTENSIONS
                               else '.png')

    def check_output(self, output):
        if not self.folder and _stem_and_extension(output)[1].lower() \
                not in WRITTEN_IMAGE_EXTENSIONS:
            raise RecordingError('an image is written as %s, not %s' % (
                ' or '.join(WRITTEN_IMAGE_EXTENSIONS), output))

    @staticmethod
    def _read(path):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        return None if bgr is None else _bgr_to_rgb(bgr)

    def frames(self):
        if not self.folder:
            yield Frame(self._first, self.files[0])
            return
        for name in self.files:
            rgb = self._read(os.path.join(self.path, name))
            yield Frame(rgb, name, None if rgb is not None else 'cannot decode %s' % name)

    def writer(self, path):
        return _ImageWriter(path, self.folder, self.jpeg_quality)


def _written_name(name):
    """A folder's image keeps its name if it is PNG or JPEG, else becomes .png."""
    stem, extension = _stem_and_extension(name)
    return stem + (extension if extension.lower() in WRITTEN_IMAGE_EXTENSIONS else '.png')


class _ImageWriter(object):

    def __init__(self, path, folder, jpeg_quality):
        self.path = path
        self.folder = folder
        self.jpeg_quality = jpeg_quality
        if folder:
            os.mkdir(path)

    def write(self, frame, painted):
        if painted is None:
            return
        path = os.path.join(self.path, _written_name(frame.item)) if self.folder else self.path
        jpeg = _stem_and_extension(path)[1].lower() != '.png'
        if not cv2.imwrite(path, _rgb_to_bgr(painted),
                           [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality] if jpeg else []):
            raise RecordingError('cannot write %s' % path)

    def close(self):
        pass

    def abort(self):
        pass


# ---------------------------------------------------------------- videos
def _import_av():
    try:
        import av
    except ImportError:
        return None
    return av


class Video(object):
    """A video file OpenCV reads; written at the source's frame rate with OpenCV, and its audio
    copied (not re-encoded) by PyAV when that is installed and the output container takes the
    audio's codec."""

    kind = 'video'

    def __init__(self, path, options):
        self.path = path
        self.fourcc = options.fourcc
        self.notes = []  # one line each, for the summary
        self._capture = cv2.VideoCapture(path)
        ok, bgr = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise RecordingError('cannot read %s: not a video or image that OpenCV decodes' % path)
        self._first = _bgr_to_rgb(bgr)
        self.fps = self._capture.get(cv2.CAP_PROP_FPS)
        if not self.fps > 0:
            raise RecordingError('%s does not say its frame rate' % path)
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.total = count if count > 0 else None
        self.frames_read = 0
        self.audio = self._audio_codecs()

    def _audio_codecs(self):
        """The source's audio codecs (PyAV), or None when PyAV is missing."""
        av = _import_av()
        if av is None:
            self.notes.append('audio not copied: PyAV is not installed (pip install av)')
            return None
        try:
            with av.open(self.path) as container:
                return [stream.codec_context.name for stream in container.streams.audio]
        except _av_errors(av) as error:
            self.notes.append('audio not copied: PyAV cannot open %s (%s)' % (self.path, error))
            return None

    def default_output(self):
        extension = _stem_and_extension(self.path)[1].lower()
        return _default_output(self.path, extension if extension in VIDEO_CODECS else '.mp4')

    def check_output(self, output):
        extension = _stem_and_extension(output)[1].lower()
        if extension not in VIDEO_CODECS:
            raise RecordingError('a video is written as %s, not %s' % (
                ', '.join(sorted(VIDEO_CODECS)), output))

    def frames(self):
        """Every frame; one that is there but does not decode is a corrupt Frame."""
        try:
            self.frames_read = 1
            yield Frame(self._first)
            while self._capture.grab():
                self.frames_read += 1
                ok, bgr = self._capture.retrieve()
                yield Frame(_bgr_to_rgb(bgr)) if ok else Frame(
                    None, error='frame %d does not decode' % self.frames_read)
        finally:
            self._capture.release()
        if self.total and self.frames_read < self.total:
            self.notes.append('the video ended after %d of the %d frames its header counts'
                              % (self.frames_read, self.total))

    def writer(self, path):
        extension = _stem_and_extension(path)[1].lower()
        return _VideoWriter(path, self.fourcc or VIDEO_CODECS[extension], self.fps,
                            self.path if self.audio else None, self.notes)


class _VideoWriter(object):

    def __init__(self, path, fourcc, fps, audio_source, notes):
        self.path = path
        self.fourcc = fourcc
        self.fps = fps
        self.audio_source = audio_source
        self.notes = notes
        stem, extension = _stem_and_extension(path)
        # With audio to add, OpenCV writes the video alone and PyAV muxes both into path.
        self._video_path = (os.path.join(os.path.dirname(path), stem + '.video' + extension)
                            if audio_source else path)
        self._writer = None

    def write(self, frame, painted):
        if painted is None:
            return
        if self._writer is None:
            height, width = painted.shape[:2]
            self._writer = cv2.VideoWriter(self._video_path, cv2.VideoWriter_fourcc(
                *self.fourcc.ljust(4)[:4]), self.fps, (width, height))
            if not self._writer.isOpened():
                raise RecordingError(
                    'OpenCV cannot write %s with codec %r (its FFmpeg lacks the encoder or '
                    'the container does not take it; try another --fourcc or extension)'
                    % (os.path.basename(self.path), self.fourcc))
        self._writer.write(_rgb_to_bgr(painted))

    def close(self):
        if self._writer is None:
            raise RecordingError('no frame to write')
        self._writer.release()
        if self.audio_source:
            _mux_audio(self._video_path, self.audio_source, self.path, self.notes)

    def abort(self):
        if self._writer is not None:
            self._writer.release()


def _av_errors(av):
    """What PyAV raises for a file FFmpeg refuses (FFmpegError from PyAV 9 on, AVError
    before)."""
    return (getattr(av, 'FFmpegError', None) or av.AVError, ValueError)


def _add_stream_like(output, stream):
    """An output stream that takes stream's packets as they are (PyAV 13 renamed the call)."""
    if hasattr(output, 'add_stream_from_template'):
        return output.add_stream_from_template(stream)
    return output.add_stream(template=stream)


def _packets(container, stream):
    for packet in container.demux(stream):
        if packet.dts is not None:  # the flush packet at the end
            yield packet


def _time(packet):
    return float(packet.dts * packet.time_base)


def _mux_audio(video_path, audio_source, path, notes):
    """Write path with the video stream of video_path and the audio streams of audio_source,
    packets copied in time order; without the audio, saying why, if the container refuses
    it."""
    av = _import_av()
    try:
        with av.open(video_path) as video, av.open(audio_source) as source, \
                av.open(path, 'w') as output:
            streams = [(video, video.streams.video[0])] + [
                (source, stream) for stream in source.streams.audio]
            mapping = dict((stream, _add_stream_like(output, stream)) for _, stream in streams)
            for packet in heapq.merge(*[_packets(c, s) for c, s in streams], key=_time):
                packet.stream = mapping[packet.stream]
                output.mux(packet)
    except _av_errors(av) as error:
        notes.append('audio not copied: %s cannot hold it (%s)' % (
            _stem_and_extension(path)[1], error))
        os.replace(video_path, path)
        return
    os.remove(video_path)
    notes.append('audio copied (%d stream(s))' % (len(streams) - 1))


# ---------------------------------------------------------------- ROS 2 bags
def _import_rosbags():
    try:
        from rosbags.rosbag2 import Reader, StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError as error:
        raise RecordingError('ROS 2 bags need Python >= 3.10 and rosbags (pip install rosbags); '
                             'this is Python %d.%d (%s)' % (sys.version_info[0],
                                                            sys.version_info[1], error))
    return Reader, Writer, StoragePlugin, get_typestore(Stores.ROS2_HUMBLE)


def _bag_error(path, error):
    return RecordingError('cannot read bag %s: %s' % (path, str(error).splitlines()[0]
                                                      if str(error) else type(error).__name__))


def _stylized_topic(topic):
    """<topic>_stylized, and <base>_stylized/compressed for image_transport's compressed."""
    if topic.endswith('/compressed'):
        return topic[:-len('/compressed')] + STYLIZED_SUFFIX + '/compressed'
    return topic + STYLIZED_SUFFIX


class Bag(object):
    """A ROS 2 bag (a folder with metadata.yaml, or one .db3 or .mcap file): every message is
    copied byte for byte, and each frame of the image topic gets a stylized message on the
    output topic with the same header and timestamp (Image in, Image out; CompressedImage
    in, JPEG CompressedImage out)."""

    kind = 'bag'

    def __init__(self, path, options):
        self.path = path
        self.output_encoding = options.output_encoding
        self.jpeg_quality = options.jpeg_quality
        self.notes = []
        self._reader_class, self._writer_class, plugins, self.typestore = _import_rosbags()
        try:
            with self._reader_class(path) as reader:
                self.connections = list(reader.connections)
                self.total_messages = reader.message_count
        except Exception as error:  # rosbags, sqlite3 and the mcap reader raise many types
            raise _bag_error(path, error)
        images = sorted(set(c.topic for c in self.connections
                            if c.msgtype in (IMAGE, COMPRESSED_IMAGE)))
        topics = ', '.join(sorted(set('%s (%s)' % (c.topic, c.msgtype)
                                      for c in self.connections))) or 'none'
        if options.topic:
            if options.topic not in images:
                raise RecordingError('%s has no image topic %s; image topics: %s; all topics: %s'
                                     % (path, options.topic, ', '.join(images) or 'none', topics))
            self.topic = options.topic
        elif len(images) == 1:
            self.topic = images[0]
        else:
            raise RecordingError('%s: %s; pick one with --topic' % (
                path, 'image topics: %s' % ', '.join(images) if images
                else 'no Image or CompressedImage topic (topics: %s)' % topics))
        self.output_topic = options.output_topic or _stylized_topic(self.topic)
        if self.output_topic in set(c.topic for c in self.connections):
            raise RecordingError('%s already has a topic %s; name another with --output-topic'
                                 % (path, self.output_topic))
        self.image_connections = [c for c in self.connections if c.topic == self.topic]
        self.total = sum(c.msgcount for c in self.image_connections) or None
        self.storage = self._storage(path, plugins)

    def _storage(self, path, plugins):
        """The input's storage plugin, which the output keeps."""
        extension = _stem_and_extension(path)[1].lower()
        if os.path.isdir(path):  # its files may be compressed: x.mcap.zstd
            extension = '.mcap' if any('.mcap' in name for name in os.listdir(path)) else '.db3'
        return plugins.MCAP if BAG_FILES[extension] == 'mcap' else plugins.SQLITE3

    def default_output(self):
        return _default_output(self.path, '')

    def check_output(self, output):
        if _stem_and_extension(output)[1].lower() in BAG_FILES:
            raise RecordingError('a bag is written as a folder; name one, not %s' % output)

    def frames(self):
        """Every message in time order; the image topic's are decoded (corrupt ones are
        copied and not stylized)."""
        image_ids = set(c.id for c in self.image_connections)
        try:
            with self._reader_class(self.path) as reader:
                for connection, timestamp, data in reader.messages():
                    item = (connection, timestamp, data)
                    if connection.id not in image_ids:
                        yield Frame(None, item)
                        continue
                    try:
                        message = self.typestore.deserialize_cdr(data, connection.msgtype)
                        rgb = (image_msg_to_rgb(message, copy=False)
                               if connection.msgtype == IMAGE else compressed_msg_to_rgb(message))
                    except Exception as error:  # a bad CDR message raises many kinds
                        yield Frame(None, item, 'message at %d ns: %s' % (timestamp, error))
                        continue
                    yield Frame(rgb, item + (message,))
        except RecordingError:
            raise
        except Exception as error:
            raise _bag_error(self.path, error)

    def writer(self, path):
        return _BagWriter(self, path)


class _BagWriter(object):
    """Opens the output bag on its first write, on the encoder thread (sqlite3 connections
    belong to the thread that made them)."""

    def __init__(self, bag, path):
        self.bag = bag
        self.path = path
        self._writer = None
        self._connections = {}  # input connection id -> output connection
        self._stylized = None

    def _open(self):
        bag = self.bag
        self._writer = bag._writer_class(self.path, version=ROSBAG2_VERSION,
                                         storage_plugin=bag.storage)
        self._writer.open()
        for connection in bag.connections:
            self._connections[connection.id] = self._add(connection, connection.topic)
        self._stylized = self._add(bag.image_connections[0], bag.output_topic)

    def _add(self, connection, topic):
        for existing in self._writer.connections:  # the same topic, type and QoS again
            if (existing.topic, existing.msgtype, existing.ext) == (
                    topic, connection.msgtype, connection.ext):
                return existing
        definition = connection.msgdef.data if connection.msgdef else ''
        known = definition and connection.digest
        return self._writer.add_connection(
            topic, connection.msgtype, typestore=None if known else self.bag.typestore,
            msgdef=definition if known else None, rihs01=connection.digest if known else None,
            serialization_format=connection.ext.serialization_format,
            offered_qos_profiles=connection.ext.offered_qos_profiles)

    def write(self, frame, painted):
        if self._writer is None:
            self._open()
        connection, timestamp, data = frame.item[:3]
        self._writer.write(self._connections[connection.id], timestamp, data)
        if painted is not None:
            self._writer.write(self._stylized, timestamp, self._serialize(
                connection.msgtype, frame.item[3], painted))

    def _serialize(self, msgtype, original, painted):
        """The stylized message: the original's header; an Image in --output-encoding, else in
        the original's encoding if the node writes that (rgb8, bgr8), else rgb8."""
        header = original.header
        if msgtype == IMAGE:
            encoding = self.bag.output_encoding or (
                original.encoding if original.encoding in OUTPUT_ENCODINGS else 'rgb8')
            return serialize_image(painted, header, encoding)
        message = self.bag.typestore.types[COMPRESSED_IMAGE](
            header=header, format=COMPRESSED_FORMAT,
            data=np.frombuffer(rgb_to_jpeg(painted, self.bag.jpeg_quality), dtype=np.uint8))
        return self.bag.typestore.serialize_cdr(message, COMPRESSED_IMAGE)

    def close(self):
        if self._writer is None:
            raise RecordingError('%s holds no messages' % self.bag.path)
        self._writer.close()

    def abort(self):
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # the staged output is deleted anyway
                pass
