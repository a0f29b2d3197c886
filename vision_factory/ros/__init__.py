"""The ROS-facing runtime of the generated nodes: the only modules that import rclpy or message packages.

  node              the node every generated node subclasses: parameters, model, input, output
  outputs           the publishers of each output kind (described in vision_factory.output_kinds)
  camera_input      the input subscription and its QoS matching (input_reliability auto)
  messages, pose_messages   vision_msgs / sensor_msgs / vision_factory_msgs message building
  diagnostics       the /diagnostics status and its publishing thread
  image_conversion  sensor_msgs Image / CompressedImage -> numpy arrays
"""
