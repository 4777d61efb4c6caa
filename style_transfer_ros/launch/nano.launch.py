"""Camera -> style_transfer node -> image_stylized, with optional rqt_image_view.

    ros2 launch style_transfer_ros nano.launch.py                       # USB webcam
    ros2 launch style_transfer_ros nano.launch.py camera:=csi           # Jetson CSI camera
    ros2 launch style_transfer_ros nano.launch.py camera:=none image_topic:=/my/image
    ros2 launch style_transfer_ros nano.launch.py style:=the_scream threads:=3 view:=true

camera:=usb runs v4l2_camera (apt: ros-humble-v4l2-camera) with rgb8 output; camera:=csi runs
gscam (ros-humble-gscam) with an nvarguscamerasrc pipeline; camera:=none stylizes an existing
topic. The node's parameters come from config/nano.yaml (params_file:=... for your own).

Before starting anything the launch checks that every package the chosen arguments need is
installed (`rosdep install` installs them all: they are exec_depends in package.xml). If one
is missing it names the package and how to install it, exits non-zero and starts no process.
"""

import os
import shutil

from ament_index_python.packages import (PackageNotFoundError, get_package_prefix,
                                         get_package_share_directory)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch.utilities import perform_substitutions
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

CSI_PIPELINE = (
    'nvarguscamerasrc sensor-id={sensor} ! '
    'video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! '
    'nvvidconv ! video/x-raw,format=BGRx ! videoconvert')

# Packages the stylizer itself needs, besides this one.
STYLIZER_PACKAGES = ('style_transfer_interfaces',)

# How to get a package that is missing, when `sudo apt install ros-<distro>-<name>` is not it.
HOW_TO_INSTALL = {
    'style_transfer_interfaces': 'build it in the same colcon workspace as style_transfer_ros '
                                 'and source install/setup.bash',
    'style_transfer_ros': 'colcon build --packages-select style_transfer_ros and source '
                          'install/setup.bash',
}
# What to do instead, for the optional packages.
ALTERNATIVES = {
    'v4l2_camera': 'or camera:=none with image_topic:=<your camera topic>',
    'gscam': 'where apt has no gscam (ROS built from source on JetPack) build '
             'github.com/ros-drivers/gscam in your workspace; or camera:=none with '
             'image_topic:=<your camera topic>',
    'rqt_image_view': 'or leave view:=false and watch the output topic elsewhere',
}


class MissingPackageError(RuntimeError):
    """A package the launch arguments need is not installed; nothing was started."""


def how_to_install(package):
    """How to install a missing ROS package (one line)."""
    if package in HOW_TO_INSTALL:
        return HOW_TO_INSTALL[package]
    distro = os.environ.get('ROS_DISTRO') or '$ROS_DISTRO'
    hint = 'sudo apt install ros-%s-%s (or rosdep install --from-paths src --ignore-src -y)' % (
        distro, package.replace('_', '-'))
    if package in ALTERNATIVES:
        hint += '; ' + ALTERNATIVES[package]
    return hint


def find_problem(why, package, executable=None):
    """Why `package` (and `executable` in its lib/ folder) cannot be started, or None.

    Looks them up the way launch_ros's Node does, so what passes here, Node finds.
    """
    try:
        prefix = get_package_prefix(package)
    except PackageNotFoundError:
        return '%s needs the ROS package %s, which is not installed: %s' % (
            why, package, how_to_install(package))
    if executable is None:
        return None
    libexec = os.path.join(prefix, 'lib', package)
    if not os.path.isdir(libexec) or shutil.which(executable, path=libexec) is None:
        return '%s needs the executable %s of the ROS package %s, which is not in %s: ' \
               'reinstall the package' % (why, executable, package, libexec)
    return None


def check_packages(needs):
    """Raise MissingPackageError naming every problem of `needs`, (why, package, executable)s."""
    problems = [problem for problem in (find_problem(*need) for need in needs) if problem]
    if problems:
        raise MissingPackageError('nothing started: ' + ' | '.join(problems))


def usb_camera(arg):
    """camera:=usb: v4l2_camera with rgb8 output."""
    return Node(
        package='v4l2_camera', executable='v4l2_camera_node', name='camera',
        parameters=[{
            'video_device': arg('device'),
            'image_size': ParameterValue(['[', arg('width'), ', ', arg('height'), ']']),
            'output_encoding': 'rgb8',
        }],
        remappings=[('image_raw', arg('image_topic'))],
        output='screen')


def csi_camera(arg):
    """camera:=csi: gscam with an nvarguscamerasrc pipeline."""
    csi_pipeline = PythonExpression([
        repr(CSI_PIPELINE), '.format(sensor=', arg('sensor_id'), ', width=', arg('width'),
        ', height=', arg('height'), ', fps=', arg('framerate'), ')'])
    return Node(
        package='gscam', executable='gscam_node', name='camera',
        parameters=[{
            'gscam_config': csi_pipeline,
            'camera_name': 'csi',
            'frame_id': 'camera_optical_frame',
            'use_gst_timestamps': False,
        }],
        remappings=[('camera/image_raw', arg('image_topic'))],
        output='screen')


# camera:=... -> (the package and executable its driver needs, the driver's Node); none: none.
CAMERAS = {
    'usb': (('v4l2_camera', 'v4l2_camera_node'), usb_camera),
    'csi': (('gscam', 'gscam_node'), csi_camera),
}


def start_nodes(context):
    """The nodes the launch arguments ask for, after checking that all of them can start.

    Runs as an OpaqueFunction: no Node exists until every package is found, so a missing
    package ends the launch before any process (the stylizer included) is started.
    """
    arg = LaunchConfiguration
    camera = perform_substitutions(context, [arg('camera')])
    view = perform_substitutions(context, [arg('view')]).strip().lower() in ('true', '1')
    driver = CAMERAS.get(camera)

    needs = [('the stylizer', package, None) for package in STYLIZER_PACKAGES]
    needs.append(('the stylizer', 'style_transfer_ros', 'stylizer_node'))
    if driver:
        needs.append(('camera:=' + camera,) + driver[0])
    if view:
        needs.append(('view:=true', 'rqt_image_view', 'rqt_image_view'))
    check_packages(needs)

    nodes = [driver[1](arg)] if driver else []
    nodes.append(Node(
        package='style_transfer_ros', executable='stylizer_node', name='style_transfer',
        parameters=[arg('params_file'), {
            'style': arg('style'),
            'num_threads': ParameterValue(arg('threads'), value_type=int),
        }],
        remappings=[('image', arg('image_topic')), ('image_stylized', arg('output_topic'))],
        output='screen', emulate_tty=True))
    if view:
        nodes.append(Node(
            package='rqt_image_view', executable='rqt_image_view', name='viewer',
            arguments=[arg('output_topic')], output='screen'))
    return nodes


def generate_launch_description():
    share = get_package_share_directory('style_transfer_ros')
    arguments = [
        DeclareLaunchArgument('camera', default_value='usb', choices=['usb', 'csi', 'none'],
                              description='Camera source: usb (v4l2_camera), csi (gscam with '
                                          'nvarguscamerasrc), none (use image_topic as is)'),
        DeclareLaunchArgument('device', default_value='/dev/video0',
                              description='USB camera device (camera:=usb)'),
        DeclareLaunchArgument('sensor_id', default_value='0',
                              description='CSI sensor id (camera:=csi)'),
        DeclareLaunchArgument('width', default_value='640', description='Camera width'),
        DeclareLaunchArgument('height', default_value='480', description='Camera height'),
        DeclareLaunchArgument('framerate', default_value='30', description='Camera fps'),
        DeclareLaunchArgument('image_topic', default_value='/image_raw',
                              description='Topic the node stylizes'),
        DeclareLaunchArgument('output_topic', default_value='/image_stylized',
                              description='Topic the node publishes'),
        DeclareLaunchArgument('style', default_value='starry_night',
                              description='Style at start-up (see ~/list_styles)'),
        DeclareLaunchArgument('threads', default_value='0',
                              description='TFLite interpreter threads; 0 = cores - 1 (leaves '
                              'a core for the camera and DDS)'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'nano.yaml'),
                              description='Node parameter file'),
        DeclareLaunchArgument('view', default_value='false', choices=['true', 'false'],
                              description='Start rqt_image_view on the output topic'),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=start_nodes)])
