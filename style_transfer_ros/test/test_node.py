"""End to end: the real node in its own process, real rclpy and DDS on loopback."""

import json
import shutil
import signal
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('style_transfer_interfaces.srv')

from ros_harness import NodeUnderTest, image_msg, make_frame  # noqa: E402
from ros_processes import CameraProcess  # noqa: E402
from style_transfer_ros.image_conversion import image_msg_to_rgb  # noqa: E402

FRAME = make_frame(48, 64)


@pytest.fixture(scope='module')
def stylizer(model_dir):
    node = NodeUnderTest({
        'model_dirs': [str(model_dir)], 'style': 'float_dynamic', 'allow_model_paths': True,
        'diagnostics_period': 0.2, 'num_threads': 1})
    yield node
    assert node.close() == 0, node.log()


@pytest.fixture
def node(stylizer):
    """The shared node, reset to a known style and settings."""
    assert stylizer.set_style('float_dynamic', strength=1.0).success
    for name, value in (('output_encoding', 'rgb8'), ('processing_size', 0),
                        ('output_size', 'input')):
        assert stylizer.set_parameter(name, value).successful
    stylizer.drain()
    return stylizer


def test_stylized_frame_keeps_header_and_size(node):
    out = node.roundtrip(FRAME, frame_id='camera_optical')
    assert out.header.frame_id == 'camera_optical'
    assert (out.height, out.width, out.encoding) == (48, 64, 'rgb8')
    assert np.abs(image_msg_to_rgb(out).astype(int) - FRAME).mean() > 20


def test_set_style_switches_output_and_updates_parameter(node):
    first = node.stylized(FRAME)
    response = node.set_style('multi_style/cool')
    assert response.success, response.message
    assert 'cool' in response.active_style
    second = node.stylized(FRAME)
    assert np.abs(first.astype(int) - second).mean() > 10
    assert node.get_parameter('style') == 'multi_style/cool'


def test_blend_is_between_its_styles(node):
    assert node.set_style('multi_style/warm').success
    warm = node.stylized(FRAME).astype(float)
    assert node.set_style('multi_style/cool').success
    cool = node.stylized(FRAME).astype(float)
    response = node.set_style(blend_styles=['warm', 'cool'], blend_weights=[1.0, 1.0])
    assert response.success, response.message
    blend = node.stylized(FRAME).astype(float)
    assert np.abs(blend - (warm + cool) / 2).max() <= 2.0
    assert node.get_parameter('style') == 'multi_style'
    assert list(node.get_parameter('blend_weights')) == pytest.approx([0.5, 0.5, 0.0])


def test_strength_blends_with_original(node):
    full = node.stylized(FRAME).astype(float)
    assert node.set_style('float_dynamic', strength=0.0).success
    assert np.array_equal(node.stylized(FRAME), FRAME)
    assert node.set_style('float_dynamic', strength=0.5).success
    half = node.stylized(FRAME).astype(float)
    assert np.abs(half - (full + FRAME) / 2).max() <= 1.5
    assert node.get_parameter('strength') == pytest.approx(0.5)


@pytest.mark.parametrize('request_kwargs, reason', [
    (dict(style='no_such_style'), 'no_such_style'),
    (dict(style='broken'), 'broken.tflite'),
    (dict(style='multi_style', blend_weights=[1.0, -1.0, 0.0]), 'negative'),
    (dict(style='multi_style', blend_weights=[1.0, 0.0]), '3'),
    (dict(blend_styles=['warm', 'no_such'], blend_weights=[0.5, 0.5]), 'no_such'),
    (dict(style='float_dynamic', blend_weights=[1.0]), 'single-style'),
    (dict(style='/etc/passwd.tflite'), 'outside the model directories'),
    (dict(style='float_dynamic', strength=2.0), 'strength'),
])
def test_failed_set_style_keeps_previous_style(node, request_kwargs, reason):
    before = node.stylized(FRAME)
    active_before = node.list_styles().active_style
    response = node.set_style(**request_kwargs)
    assert not response.success
    assert reason in response.message
    assert response.active_style == active_before
    assert np.array_equal(node.stylized(FRAME), before)
    assert node.get_parameter('style') == 'float_dynamic'


def test_model_path_inside_model_dirs_is_allowed(node, model_dir):
    response = node.set_style(str(model_dir / 'fixed_64x48.tflite'))
    assert response.success, response.message
    assert node.stylized(FRAME).shape == FRAME.shape


def _uyvy(rgb, order):
    """Pack RGB into 4:2:2 YUV (BT.601 video range) as cameras send it."""
    r, g, b = [rgb[..., i].astype(float) for i in range(3)]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u = (u[:, 0::2] + u[:, 1::2]) / 2
    v = (v[:, 0::2] + v[:, 1::2]) / 2
    planes = {'Y0': y[:, 0::2], 'Y1': y[:, 1::2], 'U': u, 'V': v}
    packed = np.stack([planes[k] for k in order], axis=-1)
    return np.clip(np.round(packed), 0, 255).astype(np.uint8).reshape(rgb.shape[0], -1)


def _raw_msg(data, height, width, encoding, step):
    msg = image_msg(np.zeros((1, 1, 3), np.uint8), 0)
    msg.height, msg.width, msg.encoding, msg.step = height, width, encoding, step
    msg.data = np.ascontiguousarray(data).tobytes()
    return msg


def _encoded(encoding):
    """(message, expected RGB, tolerance) of FRAME in the given encoding."""
    h, w = FRAME.shape[:2]
    gray = (FRAME.mean(axis=2)).astype(np.uint8)
    if encoding in ('rgb8', 'bgr8'):
        return image_msg(FRAME, 0, encoding=encoding), FRAME, 0
    if encoding in ('rgba8', 'bgra8'):
        channels = FRAME if encoding == 'rgba8' else FRAME[..., ::-1]
        data = np.concatenate([channels, np.full((h, w, 1), 255, np.uint8)], axis=2)
        return _raw_msg(data, h, w, encoding, w * 4), FRAME, 0
    if encoding == 'mono8':
        return _raw_msg(gray, h, w, encoding, w), np.stack([gray] * 3, axis=2), 0
    if encoding == 'mono16':
        data = (gray.astype('<u2') << 8) | 0x7F
        return _raw_msg(data, h, w, encoding, w * 2), np.stack([gray] * 3, axis=2), 0
    order = ('U', 'Y0', 'V', 'Y1') if encoding in ('yuv422', 'uyvy') else ('Y0', 'U', 'Y1', 'V')
    return _raw_msg(_uyvy(FRAME, order), h, w, encoding, w * 2), FRAME, 12


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16',
                                      'yuv422', 'uyvy', 'yuv422_yuy2'])
def test_every_input_encoding(node, encoding):
    assert node.set_style('float_dynamic', strength=0.0).success
    msg, expected, tolerance = _encoded(encoding)
    out = image_msg_to_rgb(node.roundtrip(None, msg=msg))
    assert np.abs(out.astype(int) - expected).mean() <= tolerance


def test_bad_frames_are_dropped_and_node_keeps_running(node):
    h, w = FRAME.shape[:2]
    bad = [
        _raw_msg(FRAME[:-1], h, w, 'rgb8', w * 3),              # data shorter than height*step
        _raw_msg(FRAME, h, w, 'bayer_unknown', w * 3),          # unknown encoding
        _raw_msg(b'', 0, 0, 'rgb8', 0),                         # zero size
        _raw_msg(FRAME, h, w, 'rgb8', w * 2),                   # step shorter than a row
    ]
    for msg in bad:
        before = int(node.next_diagnostics()['bad_frames'])
        node.publish_until(msg, lambda values: int(values['bad_frames']) > before)
    assert node.process.poll() is None
    assert node.stylized(FRAME).shape == FRAME.shape
    assert 'dropping bad frame' in node.log()


def test_live_parameter_changes(node):
    rgb_out = node.stylized(FRAME)
    assert node.set_parameter('output_encoding', 'bgr8').successful
    out = node.roundtrip(FRAME)
    assert out.encoding == 'bgr8'
    assert np.array_equal(image_msg_to_rgb(out), rgb_out)

    assert node.set_parameter('processing_size', 32).successful
    assert node.set_parameter('output_size', 'processing').successful
    assert node.roundtrip(FRAME).width == 32
    assert node.set_parameter('output_size', 'input').successful
    assert node.roundtrip(FRAME).width == 64

    assert node.set_parameter('num_threads', 2).successful
    node.next_diagnostics(lambda values: values['threads'] == '2')
    assert node.set_parameter('num_threads', 1).successful

    assert node.set_parameter('style', 'multi_style/inverse').successful
    assert 'inverse' in node.list_styles().active_style


@pytest.mark.parametrize('name, value, reason', [
    ('output_encoding', 'yuv422', 'output_encoding'),
    ('output_size', 'huge', 'output_size'),
    ('strength', 1.5, ''),
    ('style', 'no_such_style', 'no_such_style'),
    ('style', 'broken', 'broken.tflite'),
    ('blend_weights', [1.0, 2.0], 'single-style'),
    ('model_dirs', ['/nonexistent/models'], 'float_dynamic'),
    ('qos_depth', 5, ''),
])
def test_invalid_parameter_values_are_rejected(node, name, value, reason):
    before = node.get_parameter(name)
    result = node.set_parameter(name, value)
    assert not result.successful
    assert reason in result.reason
    assert node.get_parameter(name) == before
    assert node.stylized(FRAME).shape == FRAME.shape


def test_list_styles_describes_the_catalog(node):
    response = node.list_styles()
    styles = dict((s.name, s) for s in response.styles)
    assert {'float_dynamic', 'int8', 'fixed_64x48', 'multi_style'} <= set(styles)
    assert list(styles['multi_style'].style_names) == ['warm', 'cool', 'inverse']
    assert list(styles['float_dynamic'].style_names) == []
    assert styles['int8'].quantization == 'int8'
    assert styles['float_dynamic'].model_file.endswith('float_dynamic.tflite')
    assert response.active_style.startswith('float_dynamic')
    assert response.runtime


def test_list_styles_rescans_and_the_node_paints_a_style_added_while_it_runs(node, model_dir):
    """A model renamed into model_dirs is listed and painted without a restart; a bad file
    added with it is a problem in the log, and the previous state stays."""
    expected = node.stylized(FRAME)  # float_dynamic: the new file is a copy of it
    sidecar = json.loads((model_dir / 'float_dynamic.json').read_text())
    staging = model_dir / '.added_style.partial'  # as add_style stages, then renames
    staging.mkdir()
    (staging / 'added_style.json').write_text(json.dumps(dict(sidecar, name='added_style')))
    shutil.copy(str(model_dir / 'float_dynamic.tflite'), str(staging / 'added_style.tflite'))
    assert 'added_style' not in [s.name for s in node.list_styles().styles]
    (model_dir / 'garbled.tflite').write_bytes(b'\x00' * 64)
    (model_dir / 'garbled.json').write_text(json.dumps(dict(sidecar, name='garbled')))
    try:
        for name in ('added_style.json', 'added_style.tflite'):
            (staging / name).replace(model_dir / name)
        response = node.list_styles()
        names = [s.name for s in response.styles]
        assert 'added_style' in names and 'garbled' not in names and 'multi_style' in names
        assert response.active_style.startswith('float_dynamic')
        assert 'garbled.tflite: not a TFLite model' in node.log()
        assert node.set_style('added_style').success
        assert np.array_equal(node.stylized(FRAME), expected)
    finally:
        for name in ('added_style.json', 'added_style.tflite', 'garbled.json',
                     'garbled.tflite'):
            (model_dir / name).unlink()
        staging.rmdir()


def test_diagnostics_report_rates_and_style(node):
    node.stylized(FRAME)
    values = node.next_diagnostics(lambda v: float(v['output_fps']) > 0)
    for key in ('input_fps', 'inference_ms_mean', 'inference_ms_p95', 'latency_ms_mean',
                'latency_ms_p95', 'dropped_frames', 'active_style', 'runtime', 'threads'):
        assert key in values
    assert values['active_style'].startswith('float_dynamic')
    assert float(values['inference_ms_mean']) > 0
    assert values['threads'] == '1'


def test_newest_frame_wins_under_a_fast_publisher(node):
    big = make_frame(960, 1280, seed=3)
    node.roundtrip(big)  # warm up at this size
    node.drain()
    dropped_before = int(node.next_diagnostics()['dropped_frames'])
    stamps = [node.publish(big) for _ in range(40)]
    last = node.roundtrip(big)  # a final frame, published until it comes out
    seen = [s for s in iter_stamps(node) if s in stamps]
    assert last.header.stamp.nanosec > 0
    assert len(seen) < len(stamps)
    values = node.next_diagnostics(lambda v: int(v['dropped_frames']) > dropped_before)
    assert int(values['dropped_frames']) > dropped_before


def iter_stamps(node):
    while not node.outputs.empty():
        out = node.outputs.get_nowait()
        yield out.header.stamp.sec * 10 ** 9 + out.header.stamp.nanosec


def test_no_inference_without_subscribers(model_dir):
    lazy = NodeUnderTest({'model_dirs': [str(model_dir)], 'style': 'float_dynamic',
                          'diagnostics_period': 0.2}, subscribe_output=False)
    try:
        for _ in range(20):
            lazy.publish(FRAME)
            values = lazy.next_diagnostics()
            if float(values['input_fps']) > 0:
                break
        assert float(values['input_fps']) > 0
        assert float(values['output_fps']) == 0
        assert values['inference_ms_mean'] == 'nan'
    finally:
        assert lazy.close() == 0


# (signals, seconds between them): SIGTERM (systemd, docker), and SIGINT twice as Ctrl-C on
# `ros2 launch` sends it (the terminal, then launch), the second at several stages of the stop.
STOPS = [((signal.SIGTERM,), 0.0)] * 5 + [
    ((signal.SIGINT, signal.SIGINT), delay) for delay in (0.0, 0.002, 0.01, 0.03, 0.1)]


def test_every_stop_under_a_stream_is_clean(model_dir, tmp_path):
    """Ten stops while a camera streams at 30 fps and the worker paints: exit code 0 and no
    traceback, however the signals arrive."""
    failures = []
    for index, (signals, delay) in enumerate(STOPS):
        node = NodeUnderTest({'model_dirs': [str(model_dir)], 'style': 'float_dynamic',
                              'num_threads': 1})
        camera = CameraProcess(node.input_topic, 30, str(tmp_path / ('camera_%d.log' % index)),
                               width=320, height=240)
        try:
            node.outputs.get(timeout=30.0)  # painting
            node.process.send_signal(signals[0])
            for sig in signals[1:]:
                time.sleep(delay)  # the gap between the two signals, not a synchronization
                node.process.send_signal(sig)
            code = node.process.wait(timeout=30.0)
            if code != 0 or 'Traceback' in node.log():
                failures.append('%s %.3f s: exit %s\n%s' % (
                    '+'.join(signal.Signals(s).name for s in signals), delay, code, node.log()))
        finally:
            camera.stop()
            node.close()
    assert not failures, '\n'.join(failures)


def test_signals_shut_down_cleanly(model_dir):
    node = NodeUnderTest({'model_dirs': [str(model_dir)], 'style': 'float_dynamic'})
    try:
        assert node.stylized(FRAME).shape == FRAME.shape
        assert node.stop(signal.SIGINT) == 0, node.log()
        assert 'Traceback' not in node.log()
        assert 'Deprecat' not in node.log()
    finally:
        node.close()


def test_node_fails_fast_on_unknown_startup_style(model_dir):
    with pytest.raises(RuntimeError) as error:
        NodeUnderTest({'model_dirs': [str(model_dir)], 'style': 'no_such_style'},
                      ready_timeout=30.0)
    assert 'no_such_style' in str(error.value)
