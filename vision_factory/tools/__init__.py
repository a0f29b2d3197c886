"""Tooling for the tests, the demo and the benchmarks; a running node never imports it.

  bench/            benchmarks (print tables, write plots): `vision-factory bench`, soak, cold start
  demo              scripts/demo: a generated node on the recorded camera bag
  workspace         colcon workspaces of generated packages, and processes that die with their parent
  bag_replay        replaying rosbag2 image topics into ROS 2 and probing a node's answers
  recording         writing what a node published into an MCAP rosbag2
  stand_in_models   models with real signatures and known answers where no real weights can be had
"""
