"""vision_factory: a ROS 2 inference node generator and the runtime library its nodes share.

Three layers, each importing only the ones below it (test/test_layers.py checks it):

tooling: the generator and what the tests, the demo and the benchmark use; never imported by a node
  generator, cli      manifest + backend -> a node package, through templates/; the `vision-factory` command
  tools/              benchmarks (tools/bench), the demo, colcon workspaces, bag replay and recording,
                      stand-in models
ROS-facing runtime: the only modules that import rclpy or message packages
  ros/node            the node every generated node subclasses
  ros/outputs         the publishers of each output kind
  ros/...             input subscription and QoS matching, message building, diagnostics, image decoding
ROS-free core
  manifest            the strict model manifest (YAML) parser
  output_kinds        each output kind's topics, message types and parameters
  parameters          ROS parameter specs, and the one list a node declares (node_parameters)
  backends/           one session module per runtime, and the registry of backends
  models/             the model contract (Protocols) and one module per model family
  loaded_model        weights + backend + parameters -> a model on open sessions
  live_model          that model, swapped in the background when a parameter that shapes it changes
  artifacts           weights -> the file a backend loads (export chain); export_cache: the cache
  detections, poses, depth   result types; letterbox, nms, drawing: the maths
  frame_stats, frame_worker  per-frame counters; latest-frame-only inference thread
"""

__version__ = "0.1.0"
