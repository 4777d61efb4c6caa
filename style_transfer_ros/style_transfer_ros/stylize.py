"""Stylize recordings offline: an image, a folder of images, a video or a ROS 2 bag.

    ros2 run style_transfer_ros stylize INPUT [-o OUTPUT] [--style NAME] ...
    python -m style_transfer_ros.stylize INPUT ...     (the same without ROS: no rclpy)

The node's catalog, parameter validator and Stylizer paint every frame, so a file looks as
the node would paint the same frame. Frames are decoded and encoded on threads of their own
while this thread stylizes. The output is written under a temporary name and renamed when
complete; Ctrl-C leaves nothing behind.
"""
import argparse
import os
import queue
import signal
import sys
import threading
import time

import numpy as np

from style_transfer_ros import recordings
from style_transfer_ros.catalog import Catalog, SelectionError
from style_transfer_ros.node_parameters import SPEC_BY_NAME, Settings, model_directories
from style_transfer_ros.model_runtime import runtime_target
from style_transfer_ros.stylizer import ModelError, Stylizer

QUEUE_DEPTH = 8  # frames waiting for the stylizer, and for the encoder
POLL_SECONDS = 0.1  # how often a blocked pipeline thread looks whether the run has stopped
# (option, node parameter, help, argparse settings): Settings validates them as the node does.
NODE_OPTIONS = (
    ('--style', 'style', 'a catalog style, a multi-style model (classics) or one style of it '
     '(classics/the_scream)', {'metavar': 'NAME'}),
    ('--blend-weights', 'blend_weights', "a multi-style model's weights, in its style order "
     '(empty: equal)', {'type': float, 'nargs': '+', 'metavar': 'W'}),
    ('--strength', 'strength', '0 = the original frame, 1 = fully stylized', {'type': float}),
    ('--processing-size', 'processing_size', "the longest side the model sees; 0 = the "
     "frame's size", {'type': int, 'metavar': 'PX'}),
    ('--threads', 'num_threads', 'TFLite inference threads; 0 = cores - 1, leaving a core to '
     'decoding and encoding', {'type': int, 'metavar': 'N'}),
    ('--model-dir', 'model_dirs', "a folder of models with .json sidecars (repeatable); none = "
     "the package's models/", {'action': 'append', 'metavar': 'DIR'}),
    ('--output-encoding', 'output_encoding', "bags: the stylized Images' encoding; not given: "
     "the input's if rgb8 or bgr8, else the node's default", {'metavar': 'ENCODING'}),
    ('--jpeg-quality', 'jpeg_quality', 'JPEG files, and bags\' stylized CompressedImages',
     {'type': int, 'metavar': 'Q'}),
)
_END = object()  # the last item through a pipeline queue


class StylizeError(Exception):
    """A problem with the command's arguments; the message is one line saying why."""


def parser():
    result = argparse.ArgumentParser(
        prog='stylize', description=__doc__.splitlines()[0],
        epilog='An option marked (node: NAME) is the node parameter NAME, validated by the '
        'same rules. See docs/recordings.md.')
    result.add_argument('input', nargs='?', help='an image, a folder of images, a video '
                        '(mp4, avi, mkv, webm, ...), or a ROS 2 bag (folder, .db3 or .mcap)')
    result.add_argument('-o', '--output', help='default: <input name>_stylized next to it')
    result.add_argument('--overwrite', action='store_true', help='replace an existing output')
    result.add_argument('--list-styles', action='store_true', help='list the styles and exit')
    for option, name, text, settings in NODE_OPTIONS:
        result.add_argument(option, dest=name, help='%s (node: %s, default %s)' % (
            text, name, SPEC_BY_NAME[name].default), **settings)
    result.add_argument('--side-by-side', action='store_true',
                        help='images and videos: the original left of the stylized frame')
    result.add_argument('--fourcc', help='video codec as OpenCV names it (default by the '
                        'output extension: %s)' % ', '.join(
                            '%s %s' % item for item in sorted(recordings.VIDEO_CODECS.items())))
    result.add_argument('--topic', help='bags: the image topic to stylize (default: the only '
                        'Image or CompressedImage topic)')
    result.add_argument('--output-topic', help='bags: the stylized topic (default: '
                        '<topic>_stylized; <base>_stylized/compressed for a compressed topic)')
    return result


def node_settings(args):
    """The node's Settings for the options given (the node's defaults for the others)."""
    values = dict((name, getattr(args, name)) for _, name, _, _ in NODE_OPTIONS
                  if getattr(args, name) is not None)
    try:
        settings = Settings(values)
    except ValueError as error:
        raise StylizeError(str(error))
    # A bag's stylized Images keep the input's rgb8 or bgr8 unless --output-encoding is given.
    vars(args).update((name, settings.values[name]) for _, name, _, _ in NODE_OPTIONS
                      if name != 'output_encoding' or name in values)
    return settings


def list_styles(catalog):
    for entry in catalog.entries.values():
        details = ', '.join(part for part in (entry.painting, entry.artist) if part)
        print('%-40s %s' % (entry.name, details or entry.description))
        for style in entry.style_names:
            print('  %s/%s' % (entry.name, style))


class NoProgress(object):
    """What the run uses instead of tqdm where tqdm is not installed."""

    def update(self, count):
        pass

    def write(self, line, file):
        print(line, file=file)

    def close(self):
        pass


def progress_bar(total, kind):
    try:
        from tqdm import tqdm
    except ImportError:
        return NoProgress()
    return tqdm(total=total, unit='frame', desc=kind, file=sys.stderr, dynamic_ncols=True)


def run_pipeline(frames, paint, make_writer, progress):
    """Stylize every Frame of `frames` (a generator, run and closed on a decoder thread) with
    paint() here and hand it to the writer that make_writer() builds on an encoder thread.
    The first error, or Ctrl-C, stops all three; the writer is then aborted, else closed.
    Returns the counts."""
    decoded, painted = queue.Queue(QUEUE_DEPTH), queue.Queue(QUEUE_DEPTH)
    stop = threading.Event()
    errors = []

    def put(target, item):
        while not stop.is_set():
            try:
                target.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                pass
        return False

    def get(source):
        while not stop.is_set():
            try:
                return source.get(timeout=POLL_SECONDS)
            except queue.Empty:
                pass
        return _END

    def decode():
        try:
            for frame in frames:
                if not put(decoded, frame):
                    break
        except BaseException as error:
            errors.append(error)
            stop.set()
        finally:  # here, not in the garbage collector: a bag's sqlite3 is this thread's
            frames.close()
        put(decoded, _END)

    def encode():
        writer = None
        try:
            writer = make_writer()
            item = get(painted)
            while item is not _END:
                writer.write(*item)
                item = get(painted)
            if stop.is_set():
                writer.abort()
            else:
                writer.close()
        except BaseException as error:
            errors.append(error)
            stop.set()
            if writer is not None:
                writer.abort()

    threads = [threading.Thread(target=decode, name='decoder'),
               threading.Thread(target=encode, name='encoder')]
    for thread in threads:
        thread.start()
    counts = {'stylized': 0, 'skipped': 0, 'copied': 0}
    try:
        frame = get(decoded)
        while frame is not _END:
            result = None
            if frame.rgb is not None:
                result = paint(frame.rgb)
                counts['stylized'] += 1
            elif frame.error:
                if not counts['skipped']:
                    progress.write('stylize: skipping a corrupt frame (%s); the count follows '
                                   'at the end' % frame.error, file=sys.stderr)
                counts['skipped'] += 1
            else:
                counts['copied'] += 1
            if frame.rgb is not None or frame.error:
                progress.update(1)
            if not put(painted, (frame, result)):
                break
            frame = get(decoded)
        put(painted, _END)
    except BaseException:
        stop.set()
        raise
    finally:  # the threads stop within POLL_SECONDS once stop is set
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return counts


def _check_paths(input_path, output):
    source, target = os.path.realpath(input_path), os.path.realpath(output)
    if source == target or source.startswith(target + os.sep):
        raise StylizeError('the output %s would replace the input %s' % (output, input_path))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args):
    settings = node_settings(args)
    catalog = Catalog(model_directories(settings.model_dirs), target=runtime_target())
    if args.list_styles:
        list_styles(catalog)
        return 0
    if not args.input:
        raise StylizeError('give an input (an image, a folder, a video or a bag)')
    for problem in catalog.problems:
        print('stylize: warning: model catalog: %s' % problem, file=sys.stderr)
    selection = catalog.resolve(settings.style, blend_weights=settings.blend_weights)
    recording = recordings.open_recording(args.input, args)
    if args.side_by_side and recording.kind == 'bag':
        raise StylizeError('--side-by-side is for images and videos, not bags')
    output = args.output or recording.default_output()
    recording.check_output(output)
    _check_paths(args.input, output)
    recordings.refuse_existing(output, args.overwrite)  # before loading the model
    stylizer = Stylizer(selection.model_path, num_threads=settings.threads,
                        processing_size=settings.processing_size,
                        output_size=settings.output_size)
    weights = selection.weights_for(stylizer.num_styles)

    def paint(rgb):
        stylized = stylizer.stylize(rgb, style_weights=weights,
                                    strength=settings.strength)
        return np.hstack((rgb, stylized)) if args.side_by_side else stylized

    progress = progress_bar(recording.total, recording.kind)
    started = time.monotonic()
    try:
        with recordings.staged_output(output, args.overwrite) as staged:
            counts = run_pipeline(recording.frames(), paint,
                                  lambda: recording.writer(staged), progress)
    finally:
        progress.close()
    seconds = time.monotonic() - started
    details = ['%d skipped as corrupt' % counts['skipped']]
    if recording.kind == 'bag':
        details.append('%d other messages copied, stylized on %s' % (
            counts['copied'], recording.output_topic))
    details += recording.notes
    print('stylize: wrote %s: %d frames in %.1f s (%.1f fps), %s; %s, processing_size %d, '
          '%d thread(s), %s' % (
              output, counts['stylized'], seconds, counts['stylized'] / max(seconds, 1e-9),
              ', '.join(details), selection.description, settings.processing_size,
              settings.threads, stylizer.backend))
    return 0


def main(argv=None):
    """The stylize command; returns its exit code (1 after an error, 130 after Ctrl-C)."""
    args = parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # clean up as for Ctrl-C
    try:
        return run(args)
    except KeyboardInterrupt:
        print('stylize: interrupted; no output written', file=sys.stderr)
        return 130
    except (StylizeError, recordings.RecordingError, SelectionError, ModelError, OSError,
            RuntimeError) as error:  # RuntimeError: no TFLite runtime
        print('stylize: error: %s' % error, file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == '__main__':
    sys.exit(main())
