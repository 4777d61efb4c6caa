"""package.xml declares everything the package imports and launches.

`rosdep install` installs only what package.xml names: a module the node or the launch file
imports, or a package whose node the launch file starts, that is not declared there is
missing on a robot set up the ROS way ("package 'v4l2_camera' not found"). This test reads
the imports with ast and the manifest with xml.etree; it needs neither ROS nor launch.
"""

import ast
import glob
import os
import sys
import xml.etree.ElementTree as ElementTree

import pytest

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_XML = os.path.join(PACKAGE_ROOT, 'package.xml')
PACKAGE_NAME = 'style_transfer_ros'
CODE = sorted(glob.glob(os.path.join(PACKAGE_ROOT, PACKAGE_NAME, '**', '*.py'), recursive=True))
LAUNCH_FILES = sorted(glob.glob(os.path.join(PACKAGE_ROOT, 'launch', '*.py')))

# Top-level import name -> rosdep key. A new import needs a line here and its key in
# package.xml (an <exec_depend>, or <depend>).
ROSDEP_KEYS = {
    'ament_index_python': 'ament_index_python',
    'builtin_interfaces': 'builtin_interfaces',
    'cv2': 'python3-opencv',
    'cv_bridge': 'cv_bridge',
    'diagnostic_msgs': 'diagnostic_msgs',
    'launch': 'launch',
    'launch_ros': 'launch_ros',
    'numpy': 'python3-numpy',
    'rcl_interfaces': 'rcl_interfaces',
    'rclpy': 'rclpy',
    'sensor_msgs': 'sensor_msgs',
    'std_msgs': 'std_msgs',
    'std_srvs': 'std_srvs',
    'style_transfer_interfaces': 'style_transfer_interfaces',
    'tqdm': 'python3-tqdm',
    'yaml': 'python3-yaml',
}
# TFLite runtimes: pip packages with no rosdep key (package.xml's description and the README
# say how to install one). The node imports them by name with importlib; listed in case a
# static import appears.
PIP_ONLY = {'ai_edge_litert', 'tflite_runtime', 'tensorflow'}
# The stylize command's optional imports: rosbags (bags; no rosdep key, pip only) and PyAV
# (audio; the distributions' python3-av is older than the pip wheel, so not declared).
PIP_ONLY |= {'rosbags', 'av'}
# launch_ros actions whose `package` is a package that must be installed to run it.
NODE_ACTIONS = {'Node', 'LifecycleNode', 'ComposableNode', 'ComposableNodeContainer'}
RUNTIME_TAGS = ('depend', 'exec_depend')


def declared(tags):
    """The dependency keys package.xml declares with any of `tags`."""
    root = ElementTree.parse(PACKAGE_XML).getroot()
    return set(element.text.strip() for tag in tags for element in root.findall(tag))


def is_stdlib(module):
    names = getattr(sys, 'stdlib_module_names', None)  # Python 3.10+
    if names is not None:
        return module in names
    import importlib.util
    import sysconfig
    if module in sys.builtin_module_names:
        return True
    spec = importlib.util.find_spec(module)
    origin = (spec.origin or '') if spec else ''
    stdlib = sysconfig.get_paths()['stdlib']
    return origin.startswith(stdlib) and 'site-packages' not in origin


def parse(path):
    with open(path) as f:
        return ast.parse(f.read(), filename=path)


def imported_modules(path):
    """Top-level names of the absolute imports in `path` (at any depth: in functions, try)."""
    modules = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            modules.add(node.module.split('.')[0])
    return modules


def third_party_imports():
    """{module: [files importing it]} for the package code and launch files, minus the
    standard library and the package itself."""
    found = {}
    for path in CODE + LAUNCH_FILES:
        for module in imported_modules(path):
            if module != PACKAGE_NAME and not is_stdlib(module):
                found.setdefault(module, []).append(os.path.relpath(path, PACKAGE_ROOT))
    return found


def launched_packages():
    """{package: [launch files]} for every Node(package=...)-style action; a package that
    is not a string literal is returned as None (this test could not check it)."""
    found = {}
    for path in LAUNCH_FILES:
        for node in ast.walk(parse(path)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, 'id', None) or getattr(node.func, 'attr', None)
            if name not in NODE_ACTIONS:
                continue
            for keyword in node.keywords:
                if keyword.arg == 'package':
                    value = keyword.value
                    package = (value.value if isinstance(value, ast.Constant)
                               and isinstance(value.value, str) else None)
                    found.setdefault(package, []).append(
                        '%s:%d' % (os.path.relpath(path, PACKAGE_ROOT), node.lineno))
    return found


def test_the_scan_sees_the_package():
    """Guard against a vacuous pass: the scan finds what we know is there."""
    assert CODE and LAUNCH_FILES
    imports = third_party_imports()
    assert {'rclpy', 'numpy', 'cv2', 'launch', 'launch_ros'} <= set(imports)
    assert {'v4l2_camera', 'gscam', 'rqt_image_view', PACKAGE_NAME} <= set(launched_packages())


def test_every_import_has_a_rosdep_key():
    unknown = dict((module, files) for module, files in third_party_imports().items()
                   if module not in ROSDEP_KEYS and module not in PIP_ONLY)
    assert not unknown, (
        'imports without a rosdep key: %s; add them to ROSDEP_KEYS here and to package.xml'
        % unknown)


def test_every_import_is_declared():
    runtime = declared(RUNTIME_TAGS)
    missing = dict(('%s (import %s)' % (ROSDEP_KEYS[module], module), files)
                   for module, files in third_party_imports().items()
                   if module in ROSDEP_KEYS and ROSDEP_KEYS[module] not in runtime)
    assert not missing, 'package.xml lacks <exec_depend> for %s' % missing


def test_every_launched_package_is_declared():
    launched = launched_packages()
    assert None not in launched, (
        'Node(package=...) not a string literal at %s: this test cannot check it'
        % launched[None])
    runtime = declared(RUNTIME_TAGS)
    missing = dict((package, where) for package, where in launched.items()
                   if package != PACKAGE_NAME and package not in runtime)
    assert not missing, 'package.xml lacks <exec_depend> for launched packages %s' % missing


def test_no_runtime_dependency_without_a_use():
    """Every runtime dependency is imported or launched (python3-yaml is only for tests)."""
    used = set(ROSDEP_KEYS[module] for module in third_party_imports() if module in ROSDEP_KEYS)
    used.update(launched_packages())
    unused = declared(RUNTIME_TAGS) - used
    assert not unused, 'package.xml declares unused runtime dependencies: %s' % sorted(unused)


@pytest.mark.parametrize('tag', RUNTIME_TAGS + ('test_depend',))
def test_no_duplicate_declarations(tag):
    root = ElementTree.parse(PACKAGE_XML).getroot()
    keys = [element.text.strip() for element in root.findall(tag)]
    assert len(keys) == len(set(keys)), keys
