import pytest


@pytest.fixture(scope='session', autouse=True)
def rclpy_context():
    """Shut rclpy down once after the tests that started it."""
    yield
    try:
        import rclpy
    except ImportError:
        return
    rclpy.try_shutdown()
