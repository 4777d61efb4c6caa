"""Real-time neural style transfer for ROS 2: stylizer (no ROS), catalog, image conversion,
node."""
