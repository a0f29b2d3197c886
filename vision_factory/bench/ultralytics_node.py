"""Baseline for the benchmarks: what yolo_ros and ultralytics_ros run today, an rclpy node that calls
ultralytics `YOLO(weights).predict` on every frame inside its subscription callback.

    python -m vision_factory.bench.ultralytics_node --weights W [--imgsz 640] [--device cpu]

Subscribes to image_raw with the sensor-data QoS profile, publishes vision_msgs/Detection2DArray on
~/detections with the input header. Kept deliberately plain: it is the yardstick, not a product.
"""
from __future__ import annotations

import argparse
import signal
import threading

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ultralytics_node", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--conf", type=float, default=0.25)
    args, ros_args = parser.parse_known_args(argv)

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from vision_factory.detections import Detections
    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.messages import detection_array
    from vision_factory.models.yolo import load_checkpoint

    rclpy.init(args=ros_args, signal_handler_options=SignalHandlerOptions.NO)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    node = rclpy.create_node("ultralytics_predict")
    model = load_checkpoint(args.weights)
    names = tuple(model.names[i] for i in sorted(model.names))
    publisher = node.create_publisher(Detection2DArray, "~/detections", 10)

    def on_image(msg: Image) -> None:
        result = model.predict(image_to_bgr(msg), imgsz=args.imgsz, conf=args.conf, device=args.device,
                               verbose=False)[0]
        boxes = result.boxes
        detections = Detections(boxes.xyxy.numpy().astype(np.float32), boxes.conf.numpy().astype(np.float32),
                                boxes.cls.numpy().astype(np.int64), names)
        publisher.publish(detection_array(detections, msg.header))

    node.create_subscription(Image, "image_raw", on_image, qos_profile_sensor_data)
    while not stopping.is_set():
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
