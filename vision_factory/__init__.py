"""vision_factory: a ROS 2 inference node generator and the runtime library its nodes share.

Modules, one concern each:
  image_conversion  sensor_msgs Image / CompressedImage <-> numpy arrays
  letterbox         the one letterbox in the tree and its inverse
  nms               class-aware non-maximum suppression
  detections        the Detections result type
  messages          vision_msgs / sensor_msgs message building
  export_cache      the on-disk cache of exported artifacts
  artifacts         weights -> the artifact a backend loads (export chain)
  backends/         one session module per runtime, one registry of backends
  models/           one module per model family: pure preprocess / postprocess
  manifest          the strict model manifest (YAML) parser
  parameters        ROS parameter specs shared by all nodes and per backend
  runner            weights + backend -> a ready model
  node              the rclpy base node every generated node subclasses
  generator, cli    the Jinja2 package generator and the `vision-factory` command
"""

__version__ = "0.1.0"
