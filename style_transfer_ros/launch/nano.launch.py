"""Camera -> style_transfer node -> image_stylized, with optional rqt_image_view.

    ros2 launch style_transfer_ros nano.launch.py                       # USB webcam
    ros2 launch style_transfer_ros nano.launch.py camera:=csi           # Jetson CSI camera
    ros2 launch style_transfer_ros nano.launch.py camera:=none image_topic:=/my/image
    ros2 launch style_transfer_ros nano.launch.py style:=the_scream threads:=3 view:=true

camera:=usb runs v4l2_camera (apt: ros-humble-v4l2-camera) with rgb8 output; camera:=csi runs
gscam (ros-humble-gscam) with an nvarguscamerasrc pipeline; camera:=none stylizes an existing
topic. The node's parameters come from config/nano.yaml (params_file:=... for your own).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

CSI_PIPELINE = (
    'nvarguscamerasrc sensor-id={sensor} ! '
    'video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! '
    'nvvidconv ! video/x-raw,format=BGRx ! videoconvert')


def camera_is(source):
    # PythonExpression rather than LaunchConfigurationEquals: deprecated after Humble, while
    # its replacement (EqualsSubstitution) is missing in Humble.
    return IfCondition(PythonExpression(["'", LaunchConfiguration('camera'), "' == '%s'" % source]))


def generate_launch_description():
    share = get_package_share_directory('style_transfer_ros')
    arg = LaunchConfiguration
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
        DeclareLaunchArgument('threads', default_value='3',
                              description='TFLite interpreter threads (leave a core for '
                              'the camera and DDS)'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'nano.yaml'),
                              description='Node parameter file'),
        DeclareLaunchArgument('view', default_value='false', choices=['true', 'false'],
                              description='Start rqt_image_view on the output topic'),
    ]

    usb_camera = Node(
        condition=camera_is('usb'),
        package='v4l2_camera', executable='v4l2_camera_node', name='camera',
        parameters=[{
            'video_device': arg('device'),
            'image_size': ParameterValue(['[', arg('width'), ', ', arg('height'), ']']),
            'output_encoding': 'rgb8',
        }],
        remappings=[('image_raw', arg('image_topic'))],
        output='screen')

    csi_pipeline = PythonExpression([
        repr(CSI_PIPELINE), '.format(sensor=', arg('sensor_id'), ', width=', arg('width'),
        ', height=', arg('height'), ', fps=', arg('framerate'), ')'])
    csi_camera = Node(
        condition=camera_is('csi'),
        package='gscam', executable='gscam_node', name='camera',
        parameters=[{
            'gscam_config': csi_pipeline,
            'camera_name': 'csi',
            'frame_id': 'camera_optical_frame',
            'use_gst_timestamps': False,
        }],
        remappings=[('camera/image_raw', arg('image_topic'))],
        output='screen')

    stylizer = Node(
        package='style_transfer_ros', executable='stylizer_node', name='style_transfer',
        parameters=[arg('params_file'), {
            'style': arg('style'),
            'num_threads': ParameterValue(arg('threads'), value_type=int),
        }],
        remappings=[('image', arg('image_topic')), ('image_stylized', arg('output_topic'))],
        output='screen', emulate_tty=True)

    viewer = Node(
        condition=IfCondition(arg('view')),
        package='rqt_image_view', executable='rqt_image_view', name='viewer',
        arguments=[arg('output_topic')], output='screen')

    return LaunchDescription(arguments + [usb_camera, csi_camera, stylizer, viewer])
