"""nano.launch.py: arguments, which nodes each camera source starts, and their settings; a
missing package ends the launch with its name and install command before anything starts.

Needs launch and launch_ros (not on PyPI): skipped where they are missing.
"""

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

pytest.importorskip('launch')
pytest.importorskip('launch_ros')

from launch import LaunchContext  # noqa: E402
from launch.actions import DeclareLaunchArgument, OpaqueFunction  # noqa: E402
from launch.utilities import perform_substitutions  # noqa: E402
from launch_ros.actions import Node  # noqa: E402

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH_FILE = os.path.join(PACKAGE_ROOT, 'launch', 'nano.launch.py')
# (package, executable) of every node the launch can start, besides the stylizer.
OPTIONAL = (('v4l2_camera', 'v4l2_camera_node'), ('gscam', 'gscam_node'),
            ('rqt_image_view', 'rqt_image_view'))


class Workspace(object):
    """An install prefix that is the only one on AMENT_PREFIX_PATH: holds this package (its
    share/ is the source tree; its stylizer_node only notes that it was started) and what
    install() adds."""

    def __init__(self, root):
        self.prefix = root / 'prefix'
        self.started = root / 'stylizer_started'
        (self.prefix / 'share').mkdir(parents=True)
        (self.prefix / 'share' / 'style_transfer_ros').symlink_to(PACKAGE_ROOT)
        self.install('style_transfer_ros', 'stylizer_node',
                     '#!/bin/sh\necho "$@" >> "%s"\n' % self.started)
        self.install('style_transfer_interfaces')

    def install(self, package, executable=None, script='#!/bin/sh\n'):
        index = self.prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
        index.mkdir(parents=True, exist_ok=True)
        (index / package).write_text('')
        if executable is not None:
            path = self.prefix / 'lib' / package / executable
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script)
            path.chmod(0o755)

    def install_optional(self, but=()):
        for package, executable in OPTIONAL:
            if package not in but:
                self.install(package, executable)

    def description(self):
        """A fresh launch description (launch_ros Nodes expand only once)."""
        spec = importlib.util.spec_from_file_location('nano_launch', LAUNCH_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.generate_launch_description()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A workspace with this package but none of the optional ones."""
    monkeypatch.setenv('ROS_DISTRO', 'humble')
    space = Workspace(tmp_path)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(space.prefix))
    return space


@pytest.fixture
def description(workspace):
    """Make launch descriptions, with every package the launch can start installed."""
    workspace.install_optional()
    return workspace.description


def started_nodes(description, **arguments):
    """Evaluate the description for the given arguments; return ({package: Node}, context).

    Runs the OpaqueFunctions (the package check) as launch would; a missing package raises.
    """
    context = LaunchContext()
    entities = list(description.entities)
    for action in entities:
        if isinstance(action, DeclareLaunchArgument):
            value = arguments.pop(action.name, None)
            if value is None:
                value = perform_substitutions(context, action.default_value)
            elif action.choices is not None:
                assert value in action.choices, (action.name, value)
            context.launch_configurations[action.name] = value
    assert not arguments, 'unknown launch arguments %s' % arguments
    nodes = {}
    while entities:
        action = entities.pop(0)
        if isinstance(action, OpaqueFunction):
            entities[0:0] = action.execute(context) or []
        elif isinstance(action, Node) and (action.condition is None
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


@pytest.mark.parametrize('arguments, missing, alternative', [
    ({}, 'v4l2_camera', 'camera:=none'),
    ({'camera': 'usb'}, 'v4l2_camera', 'camera:=none'),
    ({'camera': 'csi'}, 'gscam', 'camera:=none'),
    ({'camera': 'none', 'view': 'true'}, 'rqt_image_view', 'view:=false'),
    ({'camera': 'usb', 'view': 'true'}, 'rqt_image_view', 'view:=false'),
], ids=['default', 'usb', 'csi', 'view', 'usb-view'])
def test_a_missing_package_is_named_before_anything_starts(workspace, arguments, missing,
                                                           alternative):
    workspace.install_optional(but=[missing])
    with pytest.raises(RuntimeError) as raised:
        started_nodes(workspace.description(), **arguments)
    message = str(raised.value)
    why = 'view:=true' if missing == 'rqt_image_view' else 'camera:=%s' % arguments.get(
        'camera', 'usb')
    assert '%s needs the ROS package %s' % (why, missing) in message
    assert 'sudo apt install ros-humble-%s' % missing.replace('_', '-') in message
    assert alternative in message
    assert 'nothing started' in message


def test_every_missing_package_is_named(workspace):
    with pytest.raises(RuntimeError) as raised:
        started_nodes(workspace.description(), camera='csi', view='true')
    assert 'package gscam' in str(raised.value)
    assert 'package rqt_image_view' in str(raised.value)


def test_a_package_without_its_executable_is_reported(workspace):
    workspace.install('v4l2_camera')  # in the index, but lib/v4l2_camera/ is empty
    with pytest.raises(RuntimeError) as raised:
        started_nodes(workspace.description(), camera='usb')
    assert 'executable v4l2_camera_node of the ROS package v4l2_camera' in str(raised.value)


def test_the_stylizer_needs_its_interfaces(tmp_path, monkeypatch):
    space = Workspace(tmp_path)
    other = tmp_path / 'elsewhere'
    other.mkdir()
    index = space.prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    (index / 'style_transfer_interfaces').rename(other / 'style_transfer_interfaces')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(space.prefix))
    with pytest.raises(RuntimeError) as raised:
        started_nodes(space.description(), camera='none')
    assert 'the stylizer needs the ROS package style_transfer_interfaces' in str(raised.value)


def test_camera_none_needs_no_optional_package(workspace):
    nodes, _ = started_nodes(workspace.description(), camera='none')
    assert set(nodes) == {'style_transfer_ros'}


# What `ros2 launch` does, with launch only (ros2launch needs ros2cli): prints the launch's
# messages and exits with its return code.
LAUNCH = '''
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService(argv=sys.argv[2:], noninteractive=True)
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]),
    launch_arguments=[argument.split(':=', 1) for argument in sys.argv[2:]])]))
sys.exit(service.run())
'''


def run_launch(*arguments):
    return subprocess.run([sys.executable, '-c', LAUNCH, LAUNCH_FILE] + list(arguments),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)


@pytest.mark.parametrize('arguments, missing', [
    (['camera:=usb'], 'v4l2_camera'),
    (['camera:=csi'], 'gscam'),
    (['camera:=none', 'view:=true'], 'rqt_image_view'),
], ids=['usb', 'csi', 'view'])
def test_launch_fails_cleanly_and_starts_no_process(workspace, arguments, missing):
    """A launch that fails for a missing package starts nothing, so no stylizer outlives it
    (docs/robustness.md, "A failed launch")."""
    completed = run_launch(*arguments)
    assert 'process started' not in completed.stdout
    assert not workspace.started.exists(), 'the stylizer was started'
    assert completed.returncode != 0, completed.stdout
    assert 'needs the ROS package %s' % missing in completed.stdout


def test_launch_starts_the_stylizer_when_all_is_there(workspace):
    """The control for the test above: the same run does start the (stand-in) stylizer."""
    completed = run_launch('camera:=none')
    assert completed.returncode == 0, completed.stdout
    assert workspace.started.exists(), completed.stdout
    assert '__node:=style_transfer' in workspace.started.read_text()
