import glob
import os
import shutil

import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


@pytest.fixture(scope='session', autouse=True)
def rclpy_context():
    """Shut rclpy down once after the tests that started it."""
    yield
    try:
        import rclpy
    except ImportError:
        return
    rclpy.try_shutdown()


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    """The fixture models in a folder of their own, plus an entry whose file is no model."""
    folder = tmp_path_factory.mktemp('models')
    for path in glob.glob(os.path.join(FIXTURES, '*.tflite')) + glob.glob(
            os.path.join(FIXTURES, '*.json')):
        shutil.copy(path, str(folder))
    (folder / 'broken.tflite').write_bytes(b'\x00' * 64)
    shutil.copy(os.path.join(FIXTURES, 'float_dynamic.json'), str(folder / 'broken.json'))
    text = (folder / 'broken.json').read_text().replace('"float_dynamic"', '"broken"')
    (folder / 'broken.json').write_text(text)
    return folder
