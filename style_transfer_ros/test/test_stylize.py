"""The stylize command on small generated recordings: a video, image folders and
ROS 2 bags in both storage formats round-trip, and every frame equals the node's Stylizer on
the same frame; Ctrl-C and corrupt inputs leave no output. Needs no ROS and no shared data."""
import os
import re
import signal
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from style_transfer_ros import stylize
from style_transfer_ros.image_conversion import rgb_to_jpeg, serialize_image
from style_transfer_ros.stylizer import Stylizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, 'fixtures')
PACKAGE_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(PACKAGE_ROOT)
PYTHON36 = os.path.join(REPO, '.venv36', 'bin', 'python')
MODEL = ['--model-dir', FIXTURES, '--style', 'float_dynamic', '--threads', '1']
FPS = 12.5
SIZE = (64, 96)  # (height, width) of the generated frames


@pytest.fixture(scope='module')
def stylizer():
    """The Stylizer the command builds for MODEL (processing_size: the node's default)."""
    return Stylizer(os.path.join(FIXTURES, 'float_dynamic.tflite'), num_threads=1,
                    processing_size=640)


def frame(index, size=SIZE):
    """A moving coloured pattern, different in every frame."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 3 + index * 11) % 256, (y * 5 + index * 7) % 256,
                    ((x + y) * 2 + index * 29) % 256], axis=-1)
    return rgb.astype(np.uint8)


def write_video(path, count, fourcc='FFV1', size=SIZE, distinct=25):
    """count frames, cycling through `distinct` different ones (making each costs time)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS,
                             (size[1], size[0]))
    assert writer.isOpened()
    frames = [cv2.cvtColor(frame(index, size), cv2.COLOR_RGB2BGR)
              for index in range(min(count, distinct))]
    for index in range(count):
        writer.write(frames[index % len(frames)])
    writer.release()


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    fps, frames = capture.get(cv2.CAP_PROP_FPS), []
    ok, bgr = capture.read()
    while ok:
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        ok, bgr = capture.read()
    capture.release()
    return fps, frames


def run_stylize(capsys, *arguments):
    """(exit code, stdout, stderr) of the command run in this process."""
    code = stylize.main([str(a) for a in arguments])
    out, err = capsys.readouterr()
    return code, out, err


def no_partial_files(folder):
    return not [name for name in os.listdir(str(folder)) if '.partial-' in name]


# ---------------------------------------------------------------- videos and images
def test_video_round_trip(tmp_path, capsys, stylizer):
    source, output = tmp_path / 'in.mkv', tmp_path / 'out.mkv'
    write_video(source, 20)
    code, out, err = run_stylize(capsys, source, '-o', output, '--fourcc', 'FFV1', *MODEL)
    assert code == 0, err
    fps, frames = read_video(output)
    _, originals = read_video(source)
    assert fps == FPS and len(frames) == len(originals) == 20
    for original, stylized in zip(originals, frames):  # FFV1 is lossless
        assert np.array_equal(stylized, stylizer.stylize(original))
    assert 'wrote %s: 20 frames' % output in out and '0 skipped' in out
    assert no_partial_files(tmp_path)


def test_video_side_by_side_and_default_output(tmp_path, capsys, stylizer):
    source = tmp_path / 'clip.avi'
    write_video(source, 3)
    code, _, err = run_stylize(capsys, source, '--side-by-side', '--fourcc', 'FFV1', *MODEL)
    assert code == 0, err
    _, frames = read_video(tmp_path / 'clip_stylized.avi')
    _, originals = read_video(source)
    assert len(frames) == 3 and frames[0].shape == (SIZE[0], 2 * SIZE[1], 3)
    assert np.array_equal(frames[1][:, :SIZE[1]], originals[1])
    assert np.array_equal(frames[1][:, SIZE[1]:], stylizer.stylize(originals[1]))


def test_video_keeps_its_audio(tmp_path, capsys):
    av = pytest.importorskip('av')
    source, output = tmp_path / 'phone.mp4', tmp_path / 'out.mp4'
    with av.open(str(source), 'w') as container:
        video = container.add_stream('mpeg4', rate=25)
        video.width, video.height, video.pix_fmt = SIZE[1], SIZE[0], 'yuv420p'
        audio = container.add_stream('aac', rate=16000)
        for index in range(25):
            image = av.VideoFrame.from_ndarray(frame(index), format='rgb24')
            for packet in video.encode(image):
                container.mux(packet)
        for start in range(0, 16000, 1024):
            samples = np.sin(np.arange(start, start + 1024) * 0.05).astype(np.float32)
            sound = av.AudioFrame.from_ndarray(samples[np.newaxis], format='fltp',
                                               layout='mono')
            sound.sample_rate, sound.pts = 16000, start
            for packet in audio.encode(sound):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    code, out, err = run_stylize(capsys, source, '-o', output, *MODEL)
    assert code == 0, err
    assert 'audio copied (1 stream(s))' in out
    with av.open(str(source)) as original, av.open(str(output)) as result:
        assert [s.codec_context.name for s in result.streams.audio] == ['aac']
        assert result.streams.audio[0].frames == original.streams.audio[0].frames > 0
        assert result.streams.video[0].average_rate == 25
    assert len(read_video(output)[1]) == 25
    assert sorted(os.listdir(str(tmp_path))) == ['out.mp4', 'phone.mp4']


def test_image_folder(tmp_path, capsys, stylizer):
    photos = tmp_path / 'photos'
    photos.mkdir()
    for index in range(3):
        cv2.imwrite(str(photos / ('%d.png' % index)),
                    cv2.cvtColor(frame(index), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / 'scan.bmp'), cv2.cvtColor(frame(5), cv2.COLOR_RGB2BGR))
    (photos / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    (photos / 'notes.txt').write_text('not an image')
    code, out, err = run_stylize(capsys, photos, *MODEL)
    assert code == 0, err
    result = tmp_path / 'photos_stylized'
    assert sorted(os.listdir(str(result))) == ['0.png', '1.png', '2.png', 'scan.png']
    for name, index in (('0.png', 0), ('2.png', 2), ('scan.png', 5)):
        written = cv2.cvtColor(cv2.imread(str(result / name)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(written, stylizer.stylize(frame(index)))
    assert '4 frames' in out and '1 skipped as corrupt' in out
    assert 'skipping a corrupt frame (cannot decode broken.png)' in err


def test_existing_output_and_the_input_are_never_replaced(tmp_path, capsys):
    source = tmp_path / 'photo.png'
    cv2.imwrite(str(source), frame(0))
    existing = tmp_path / 'photo_stylized.png'
    existing.write_bytes(b'keep me')
    code, _, err = run_stylize(capsys, source, *MODEL)
    assert code == 1 and 'exists; give --overwrite' in err
    assert existing.read_bytes() == b'keep me'
    code, _, err = run_stylize(capsys, source, '-o', source, '--overwrite', *MODEL)
    assert code == 1 and 'would replace the input' in err
    code, _, err = run_stylize(capsys, source, '--overwrite', *MODEL)
    assert code == 0, err
    assert cv2.imread(str(existing)).shape == (SIZE[0], SIZE[1], 3)
    assert no_partial_files(tmp_path)


@pytest.mark.parametrize('arguments, message', [
    (['--strength', '1.5'], 'strength must be within [0.0, 1.0]'),
    (['--processing-size', '8'], 'processing_size must be 0 (frame size) or between 16 and'),
    (['--style', 'nope'], "unknown style 'nope'"),
    (['--blend-weights', '1', '2'], 'single-style model; it cannot blend'),
])
def test_options_are_validated_as_the_node_does(tmp_path, capsys, arguments, message):
    source = tmp_path / 'photo.png'
    cv2.imwrite(str(source), frame(0))
    code, _, err = run_stylize(capsys, source, *(MODEL + arguments))
    assert code == 1 and message in err
    assert sorted(os.listdir(str(tmp_path))) == ['photo.png']


# ---------------------------------------------------------------- bags
@pytest.fixture(scope='module')
def rosbags():
    return pytest.importorskip('rosbags.rosbag2', reason='bags need rosbags (Python >= 3.10)')


def typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_HUMBLE)


def header(store, index):
    Header, Time = store.types['std_msgs/msg/Header'], store.types['builtin_interfaces/msg/Time']
    return Header(stamp=Time(sec=100 + index, nanosec=1000 * index), frame_id='camera_%d' % index)


def raw_image(store, index, encoding='bgr8', data=None):
    """A bgr8 frame with 4 bytes of row padding (the node's input encodings are tested in
    test_image_conversion; a padded step checks that the bag's layout is honoured)."""
    pixels = cv2.cvtColor(frame(index), cv2.COLOR_RGB2BGR)
    step = SIZE[1] * 3 + 4
    rows = np.zeros((SIZE[0], step), np.uint8)
    rows[:, :SIZE[1] * 3] = pixels.reshape(SIZE[0], -1)
    return store.types['sensor_msgs/msg/Image'](
        header=header(store, index), height=SIZE[0], width=SIZE[1], encoding=encoding,
        is_bigendian=0, step=step, data=rows.ravel() if data is None else data)


def compressed_image(store, index):
    jpeg = rgb_to_jpeg(frame(index), 95)
    return store.types['sensor_msgs/msg/CompressedImage'](
        header=header(store, index), format='jpeg', data=np.frombuffer(jpeg, np.uint8))


def write_bag(path, storage, topics):
    """topics: [(topic, msgtype, [(timestamp, message)])], written in timestamp order."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    store = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(str(path), version=8, storage_plugin=plugin) as writer:
        messages = []
        for topic, msgtype, items in topics:
            connection = writer.add_connection(topic, msgtype, typestore=store)
            messages += [(t, connection, store.serialize_cdr(m, msgtype)) for t, m in items]
        for timestamp, connection, data in sorted(messages, key=lambda m: m[0]):
            writer.write(connection, timestamp, data)


def read_bag(path):
    """{topic: (msgtype, [(timestamp, bytes)])}."""
    from rosbags.rosbag2 import Reader
    topics = {}
    with Reader(str(path)) as reader:
        for connection, timestamp, data in reader.messages():
            entry = topics.setdefault(connection.topic, (connection.msgtype, []))
            entry[1].append((timestamp, bytes(data)))
    return topics


def robot_topics(store, compressed=False):
    images = [(10 ** 9 * (index + 1), compressed_image(store, index) if compressed
               else raw_image(store, index)) for index in range(4)]
    if not compressed:  # one corrupt frame: data shorter than height x step
        images.append((5 * 10 ** 9, raw_image(store, 4, data=np.zeros(10, np.uint8))))
    String = store.types['std_msgs/msg/String']
    return [
        ('/camera/image_raw/compressed' if compressed else '/camera/image_raw',
         'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image', images),
        ('/status', 'std_msgs/msg/String',
         [(10 ** 9 * index + 5, String(data='status %d' % index)) for index in range(7)]),
    ]


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_bag_round_trip(tmp_path, capsys, stylizer, rosbags, storage):
    store = typestore()
    source, output = tmp_path / 'robot', tmp_path / 'robot_out'
    write_bag(source, storage, robot_topics(store))
    code, out, err = run_stylize(capsys, source, '-o', output, *MODEL)
    assert code == 0, err
    original, result = read_bag(source), read_bag(output)
    assert set(result) == {'/camera/image_raw', '/status', '/camera/image_raw_stylized'}
    for topic in original:  # every original message, byte for byte, at its timestamp
        assert result[topic] == original[topic]
    msgtype, stylized = result['/camera/image_raw_stylized']
    assert msgtype == 'sensor_msgs/msg/Image'
    assert [t for t, _ in stylized] == [10 ** 9 * (index + 1) for index in range(4)]
    for index, (_, data) in enumerate(stylized):
        header = SimpleNamespace(frame_id='camera_%d' % index, stamp=SimpleNamespace(
            sec=100 + index, nanosec=1000 * index))
        expected = serialize_image(stylizer.stylize(frame(index)), header, 'bgr8')  # as input
        assert data == expected  # the header (stamp, frame_id) and the node's pixels
    files = os.listdir(str(output))
    assert any(name.endswith('.mcap' if storage == 'mcap' else '.db3') for name in files)
    assert '4 frames' in out and '1 skipped as corrupt' in out and '7 other messages' in out
    assert no_partial_files(tmp_path)


def test_bag_compressed_in_and_out(tmp_path, capsys, stylizer, rosbags):
    store = typestore()
    source, output = tmp_path / 'robot.mcap', tmp_path / 'out'
    write_bag(tmp_path / 'bag', 'mcap', robot_topics(store, compressed=True))
    bare, = (tmp_path / 'bag').glob('*.mcap')
    os.rename(str(bare), str(source))  # a storage file without its metadata.yaml
    code, _, err = run_stylize(capsys, source, '-o', output, '--jpeg-quality', '90', *MODEL)
    assert code == 0, err
    result = read_bag(output)
    msgtype, stylized = result['/camera/image_raw_stylized/compressed']
    assert msgtype == 'sensor_msgs/msg/CompressedImage' and len(stylized) == 4
    for index, (_, data) in enumerate(stylized):
        message = store.deserialize_cdr(data, msgtype)
        decoded = cv2.cvtColor(cv2.imdecode(compressed_image(store, index).data, 1),
                               cv2.COLOR_BGR2RGB)
        expected = rgb_to_jpeg(stylizer.stylize(decoded), 90)
        assert bytes(message.data) == bytes(expected)
        stamp = message.header.stamp
        assert (stamp.sec, stamp.nanosec, message.header.frame_id) == (
            100 + index, 1000 * index, 'camera_%d' % index)


def test_bag_topic_choice(tmp_path, capsys, rosbags):
    store = typestore()
    source = tmp_path / 'two_cameras'
    front = [(10 ** 9, raw_image(store, 0))]
    write_bag(source, 'sqlite3', [('/front/image', 'sensor_msgs/msg/Image', front),
                                  ('/rear/image', 'sensor_msgs/msg/Image', front)])
    code, _, err = run_stylize(capsys, source, *MODEL)
    assert code == 1
    assert 'image topics: /front/image, /rear/image; pick one with --topic' in err
    code, _, err = run_stylize(capsys, source, '--topic', '/rear/image', '--output-topic',
                               '/painted', '--output-encoding', 'rgb8', *MODEL)
    assert code == 0, err
    result = read_bag(tmp_path / 'two_cameras_stylized')
    assert set(result) == {'/front/image', '/rear/image', '/painted'}
    painted = store.deserialize_cdr(result['/painted'][1][0][1], 'sensor_msgs/msg/Image')
    assert painted.encoding == 'rgb8' and painted.header.frame_id == 'camera_0'


# ---------------------------------------------------------------- failures, Ctrl-C, no ROS
def command(*arguments):
    return [sys.executable, '-m', 'style_transfer_ros.stylize'] + [str(a) for a in arguments]


@pytest.mark.parametrize('name, content', [
    ('clip.mp4', b'\x00\x00\x00\x18ftypmp42' + b'\xff' * 500),
    ('robot.db3', b'SQLite format 3\x00' + b'\x01' * 500),
    ('robot.mcap', b'\x89MCAP0\r\n' + b'\x02' * 500),
    ('photo.jpg', b'\xff\xd8\xff' + b'\x03' * 100),
])
def test_corrupt_input_is_one_error_line_and_exit_1(tmp_path, name, content):
    source = tmp_path / name
    source.write_bytes(content)
    completed = subprocess.run(command(source, *MODEL), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert completed.returncode == 1
    ours = [line for line in completed.stderr.splitlines() if line.startswith('stylize')]
    assert len(ours) == 1 and ours[0].startswith('stylize: error: cannot ')
    assert 'Traceback' not in completed.stderr
    assert sorted(os.listdir(str(tmp_path))) == [name]


def test_sigint_mid_run_leaves_no_output(tmp_path):
    source, output = tmp_path / 'long.avi', tmp_path / 'out.avi'
    write_video(source, 400, fourcc='MJPG', size=(240, 320), distinct=4)
    process = subprocess.Popen(command(source, '-o', output, '--processing-size', '0', *MODEL),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b''
    while not re.search(rb' [1-9]\d*/400 ', seen):  # the progress bar shows painted frames
        chunk = os.read(process.stderr.fileno(), 4096)
        assert chunk, 'the command ended before painting a frame: %r' % seen[-2000:]
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, (seen + rest)[-2000:]
    assert b'interrupted; no output written' in rest
    assert b' 400/400 ' not in seen + rest  # it was stopped mid-run
    assert sorted(os.listdir(str(tmp_path))) == ['long.avi']


def test_runs_without_rclpy(tmp_path):
    source = tmp_path / 'photo.png'
    cv2.imwrite(str(source), frame(0))
    script = ('import sys; from style_transfer_ros import stylize; '
              'code = stylize.main(sys.argv[1:]); '
              'print("rclpy imported" if "rclpy" in sys.modules else "no rclpy"); sys.exit(code)')
    completed = subprocess.run([sys.executable, '-c', script, str(source)] + MODEL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=60)
    assert completed.returncode == 0, completed.stdout
    assert completed.stdout.splitlines()[-1] == 'no rclpy'
    assert (tmp_path / 'photo_stylized.png').is_file()


@pytest.mark.skipif(not os.path.exists(PYTHON36), reason='no .venv36 (the Jetson Nano job)')
def test_images_and_videos_under_python36(tmp_path):
    """The Nano's Python 3.6 and TensorFlow 2.6: a video and a folder; bags say what they need."""
    source = tmp_path / 'clip.avi'
    write_video(source, 5)
    env = dict(os.environ, STYLE_TRANSFER_TFLITE_RUNTIME='tensorflow',
               PYTHONPATH=PACKAGE_ROOT)
    python36 = [PYTHON36, '-m', 'style_transfer_ros.stylize']
    completed = subprocess.run(python36 + [str(source), '--fourcc', 'FFV1'] + MODEL, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert len(read_video(tmp_path / 'clip_stylized.avi')[1]) == 5
    (tmp_path / 'robot.db3').write_bytes(b'')
    completed = subprocess.run(python36 + [str(tmp_path / 'robot.db3')] + MODEL, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=300)
    assert completed.returncode == 1
    assert 'stylize: error: ROS 2 bags need Python >= 3.10 and rosbags' in completed.stdout
