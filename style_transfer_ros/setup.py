from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'style_transfer_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', package_name, 'config'), glob('config/*.yaml')),
        (os.path.join('share', package_name, 'models'),
         glob('models/*.tflite') + glob('models/*.json')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='style_transfer_ros maintainers',
    maintainer_email='maintainers@style-transfer-ros.invalid',
    description='Real-time neural style transfer node for ROS 2 with live style blending.',
    license='MIT',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'stylizer_node = style_transfer_ros.stylizer_node:main',
            'stylize = style_transfer_ros.stylize:main',
        ],
    },
)
