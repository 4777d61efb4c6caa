"""nano.launch.py: arguments, which nodes each camera source starts, and their settings.

Needs launch and launch_ros (not on PyPI): skipped where they are missing.
"""

import importlib.util
import os

import pytest
import yaml

pytest.importorskip('launch')
pytest.importorskip('launch_ros')

from launch import LaunchContext  # noqa: E402
from launch.actions import DeclareLaunchArgument  # noqa: E402
from launch.utilities import perform_substitutions  # noqa: E402
from launch_ros.actions import Node  # noqa: E402

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH_FILE = os.path.join(PACKAGE_ROOT, 'launch', 'nano.launch.py')


@pytest.fixture
def description(tmp_path, monkeypatch):
    """Make launch descriptions (fresh each time: launch_ros Nodes expand only once), with
    the package findable as if installed."""
    prefix = tmp_path / 'prefix'
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'style_transfer_ros').write_text('')
    (prefix / 'share' / 'style_transfer_ros').symlink_to(PACKAGE_ROOT)
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.pathsep.join(
        [str(prefix)] + [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
                         if p]))
    spec = importlib.util.spec_from_file_location('nano_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description


def started_nodes(description, **arguments):
    """Evaluate the description for the given arguments; return ({package: Node}, context)."""
    context = LaunchContext()
    for action in description.entities:
        if isinstance(action, DeclareLaunchArgument):
            value = arguments.pop(action.name, None)
            if value is None:
                value = perform_substitutions(context, action.default_value)
            context.launch_configurations[action.name] = value
    assert not arguments, 'unknown launch arguments %s' % arguments
    nodes = {}
    for action in description.entities:
        if isinstance(action, Node) and (action.condition is None
                                         or action.condition.evaluate(context)):
            action._perform_substitutions(context)
            nodes[action.node_package] = action
    return nodes, context


def parameters(node):
    """The node's parameters as launch passes them: files, in order, merged."""
    merged = {'__files': []}
    for path, is_file in node._Node__expanded_parameter_arguments:
        assert is_file
        merged['__files'].append(path)
        with open(path) as f:
            for section in yaml.safe_load(f).values():
                merged.update(section['ros__parameters'])
    return merged


def test_declares_the_documented_arguments(description):
    names = set(a.name for a in description().entities
                 if isinstance(a, DeclareLaunchArgument))
    assert {'camera', 'device', 'sensor_id', 'width', 'height', 'framerate', 'image_topic',
            'output_topic', 'style', 'threads', 'params_file', 'view'} <= names


def test_usb_camera_feeds_the_stylizer(description):
    nodes, _ = started_nodes(description(), camera='usb', device='/dev/video2', width='1280',
                          height='720', image_topic='/cam/image', threads='3',
                          style='the_scream')
    assert set(nodes) == {'v4l2_camera', 'style_transfer_ros'}
    camera = parameters(nodes['v4l2_camera'])
    assert camera['video_device'] == '/dev/video2'
    assert list(camera['image_size']) == [1280, 720]
    assert camera['output_encoding'] == 'rgb8'
    assert ('image_raw', '/cam/image') in nodes['v4l2_camera'].expanded_remapping_rules

    stylizer = nodes['style_transfer_ros']
    assert stylizer.node_executable == 'stylizer_node'
    settings = parameters(stylizer)
    assert settings['style'] == 'the_scream'
    assert settings['num_threads'] == 3
    assert any(str(f).endswith(os.path.join('config', 'nano.yaml'))
               for f in settings['__files'])
    assert ('image', '/cam/image') in stylizer.expanded_remapping_rules
    assert ('image_stylized', '/image_stylized') in stylizer.expanded_remapping_rules


def test_csi_camera_uses_an_nvargus_pipeline(description):
    nodes, _ = started_nodes(description(), camera='csi', sensor_id='1', width='1280',
                          height='720', framerate='60')
    assert set(nodes) == {'gscam', 'style_transfer_ros'}
    config = parameters(nodes['gscam'])['gscam_config']
    assert config == ('nvarguscamerasrc sensor-id=1 ! '
                      'video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1 ! '
                      'nvvidconv ! video/x-raw,format=BGRx ! videoconvert')
    assert ('camera/image_raw', '/image_raw') in nodes['gscam'].expanded_remapping_rules


def test_camera_none_and_viewer(description):
    nodes, _ = started_nodes(description(), camera='none')
    assert set(nodes) == {'style_transfer_ros'}
    nodes, context = started_nodes(description(), camera='none', view='true',
                                   output_topic='/out')
    assert set(nodes) == {'style_transfer_ros', 'rqt_image_view'}
    viewer = nodes['rqt_image_view']
    assert viewer.node_executable == 'rqt_image_view'
    assert [perform_substitutions(context, [argument])
            for argument in viewer._Node__arguments] == ['/out']
    assert ('image_stylized', '/out') in nodes['style_transfer_ros'].expanded_remapping_rules
