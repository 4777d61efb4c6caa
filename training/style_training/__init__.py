"""Offline trainer, TFLite converter and evaluator for style_transfer_ros models."""
