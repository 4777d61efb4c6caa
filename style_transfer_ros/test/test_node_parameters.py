"""The node's parameter rules (node_parameters) and health report (frame_statistics), without
ROS: every rule the node applies to ros2 param set, start-up values and ~/set_style."""
import pytest

from style_transfer_ros import frame_statistics
from style_transfer_ros.node_parameters import SPECS, Settings, auto_threads, cores


def test_defaults_are_valid_and_bound_the_frame_size():
    settings = Settings({})
    assert settings.processing_size > 0  # a 3000x3000 frame is not processed at full size
    assert settings.max_input_pixels < 8000 * 8000
    assert settings.num_threads == 0 and settings.threads == auto_threads()
    assert auto_threads() == max(1, cores() - 1)
    assert set(settings.values) == set(spec.name for spec in SPECS)


@pytest.mark.parametrize('name, value, reason', [
    ('output_encoding', 'yuv422', 'output_encoding must be one of rgb8, bgr8'),
    ('output_size', 'huge', 'output_size must be one of'),
    ('strength', float('nan'), 'strength must be within [0.0, 1.0]'),
    ('strength', 1.5, 'strength must be within'),
    ('strength', True, 'strength must be a number'),
    ('processing_size', 8, 'processing_size must be 0 (frame size) or between 16 and 4096 px'),
    ('processing_size', 5000, 'processing_size must be 0 (frame size) or between 16 and 4096'),
    ('processing_size', 2.5, 'processing_size must be an integer'),
    ('num_threads', -1, 'num_threads must be within [0, 64]'),
    ('blend_weights', ['a'], 'blend_weights must be a list of numbers'),
    ('blend_weights', 'abc', 'blend_weights must be a list'),
    ('model_dirs', [1], 'model_dirs must be a list of strings'),
    ('lazy', 1, 'lazy must be true or false'),
    ('jpeg_quality', 0, 'jpeg_quality must be within [1, 100]'),
    ('style', 5, 'style must be a string'),
])
def test_invalid_values_are_refused_with_the_rule(name, value, reason):
    with pytest.raises(ValueError) as error:
        Settings({}).updated({name: value})
    assert reason in str(error.value)


def test_refused_update_changes_nothing_and_unknown_names_are_refused():
    settings = Settings({'strength': 0.5})
    with pytest.raises(ValueError):
        settings.updated({'strength': 0.25, 'output_encoding': 'nope'})
    assert settings.strength == 0.5
    with pytest.raises(ValueError) as error:
        settings.updated({'no_such': 1})
    assert 'no_such' in str(error.value)


def test_arrays_accept_what_the_cli_types_them_as():
    """`ros2 param set ... blend_weights '[]'` sends a bool array, '[1, 1]' an integer one."""
    settings = Settings({})
    assert settings.updated({'blend_weights': None}).blend_weights == []
    assert settings.updated({'blend_weights': []}).blend_weights == []
    assert settings.updated({'blend_weights': [1, 1, 0]}).blend_weights == [1.0, 1.0, 0.0]
    assert settings.updated({'model_dirs': ['']}).model_dirs == ['']
    # Their values are the catalog's rule (normalized_weights, test_catalog), not checked here.
    assert settings.updated({'blend_weights': [0.5, -0.5]}).blend_weights == [0.5, -0.5]


def test_refused_values_are_echoed_clipped():
    with pytest.raises(ValueError) as error:
        Settings({}).updated({'output_encoding': 'x' * 100000})
    assert len(str(error.value)) < 300


def _report(statistics, lazy_idle=False, timeout=5.0):
    return frame_statistics.report(statistics, timeout, lazy_idle, '/camera/image')


def test_report_levels_follow_what_the_frames_did():
    statistics = frame_statistics.FrameStatistics()
    starting = _report(statistics)
    assert (starting.level, starting.message) == (frame_statistics.OK,
                                                  'no frame received yet on /camera/image')
    silent = _report(statistics, timeout=0.0)
    assert (silent.level, silent.message) == (frame_statistics.WARN,
                                              'no frame received yet on /camera/image')

    for _ in range(10):
        statistics.count('received')
        statistics.count('published')
    statistics.add_time('inference_ms', 20.0)
    healthy = _report(statistics)
    assert healthy.level == frame_statistics.OK
    assert dict(healthy.values)['received_frames'] == '10'
    assert float(dict(healthy.values)['inference_ms_mean']) == 20.0

    for _ in range(10):
        statistics.count('received')
    idle = _report(statistics, lazy_idle=True)
    assert (idle.level, idle.message) == (frame_statistics.OK,
                                          'no subscribers (lazy): not stylizing')

    for _ in range(10):
        statistics.count('received')
        statistics.count('dropped')
    statistics.count('published')
    assert 'dropping most frames (10 of 10)' in _report(statistics).message

    statistics.count('received')
    statistics.count('failed', 'RuntimeError: boom')
    failing = _report(statistics)
    assert (failing.level, failing.message) == (frame_statistics.ERROR,
                                                'inference fails: RuntimeError: boom')

    pause = _report(statistics)  # no frame in this window, input_timeout not reached
    assert pause.level == frame_statistics.OK
    assert pause.message.startswith('no new frame for 0.') and pause.message.endswith(' s')

    statistics.count('received')
    stale = _report(statistics, timeout=0.0)
    assert stale.level == frame_statistics.WARN and 'no frames on /camera/image' in stale.message
