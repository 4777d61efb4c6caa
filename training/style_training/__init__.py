"""Offline trainer, TFLite converter and evaluator for style_transfer_ros models.

Training imports two modules of the ROS package and nothing else of it, both plain Python
without rclpy: style_transfer_ros.model_contract (the sidecar format and its validator), so the
converter writes only what the node reads, and style_transfer_ros.model_runtime (the node's
model runner), so the parity check and the evaluator run models as the node does.
scripts/env.sh and pytest.ini put style_transfer_ros/ on the path; run from a clone without
them, it is found beside training/.
"""
import sys
from pathlib import Path

_ROS_PACKAGE = Path(__file__).resolve().parents[2] / 'style_transfer_ros'
if _ROS_PACKAGE.is_dir() and str(_ROS_PACKAGE) not in sys.path:
    sys.path.append(str(_ROS_PACKAGE))
