"""Building the ROS messages the nodes publish: vision_msgs detections and label maps, bgr8 images."""
from __future__ import annotations

import sys
from typing import Iterable, Sequence

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import (BoundingBox2D, Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose,
                             VisionClass)

from vision_factory.detections import Detections


def detection_array(detections: Detections, header: Header) -> Detection2DArray:
    """vision_msgs/Detection2DArray with `header` copied: per box its centre and size in source pixels,
    one hypothesis whose class_id is the model's class name, and its track id in Detection2D.id."""
    out = Detection2DArray(header=header)
    boxes = detections.boxes_xyxy.astype(np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    sizes = boxes[:, 2:] - boxes[:, :2]
    track_ids = detections.track_ids or ("",) * len(detections)
    for centre, size, score, class_id, track_id in zip(centres.tolist(), sizes.tolist(), detections.scores.tolist(),
                                                       detections.class_ids.tolist(), track_ids):
        det = Detection2D(header=header, id=track_id)
        det.bbox.center.position.x, det.bbox.center.position.y = centre
        det.bbox.size_x, det.bbox.size_y = size
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = detections.class_name(class_id)
        hypothesis.hypothesis.score = score
        det.results.append(hypothesis)
        out.detections.append(det)
    return out


def prompt_detections(msg: Detection2DArray) -> Detections:
    """A Detection2DArray's detections as prompts: boxes, the first hypothesis's class name and score (none:
    class "", score 0) and each Detection2D.id (as track_ids), in the message's order."""
    names = [det.results[0].hypothesis.class_id if det.results else "" for det in msg.detections]
    labels = tuple(dict.fromkeys(names))
    return Detections(boxes_xyxy(det.bbox for det in msg.detections).astype(np.float32),
                      np.array([det.results[0].hypothesis.score if det.results else 0.0 for det in msg.detections],
                               np.float32),
                      np.array([labels.index(name) for name in names], np.int64), labels,
                      tuple(det.id for det in msg.detections))


def boxes_xyxy(boxes: Iterable[BoundingBox2D]) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 of vision_msgs boxes (centre and size), float64."""
    return np.array([[box.center.position.x - box.size_x / 2, box.center.position.y - box.size_y / 2,
                      box.center.position.x + box.size_x / 2, box.center.position.y + box.size_y / 2]
                     for box in boxes], np.float64).reshape(-1, 4)


def stamp_seconds(header: Header) -> float:
    """The header's stamp in seconds."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def stamp_key(header: Header) -> tuple[int, int]:
    """The header's stamp as an exact, ordered key: (sec, nanosec)."""
    return header.stamp.sec, header.stamp.nanosec


def label_info(labels: Sequence[str], threshold: float, header: Header) -> LabelInfo:
    """vision_msgs/LabelInfo: the model's class map, published once on a latched topic."""
    return LabelInfo(header=header, threshold=float(threshold),
                     class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(labels)])


def depth_image(values: np.ndarray, header: Header) -> Image:
    """sensor_msgs/Image 32FC1 (REP 118: one float32 per pixel, in the machine's byte order) from (H, W)."""
    return _one_channel_image(values, header, "32FC1", np.float32)


def mono16_image(values: np.ndarray, header: Header) -> Image:
    """sensor_msgs/Image mono16 (one uint16 per pixel, in the machine's byte order) from (H, W)."""
    return _one_channel_image(values, header, "mono16", np.uint16)


def _one_channel_image(values: np.ndarray, header: Header, encoding: str, dtype: type) -> Image:
    """sensor_msgs/Image of (H, W) values as `dtype`, rows unpadded, in the machine's byte order."""
    height, width = values.shape
    data = np.ascontiguousarray(values, dtype=dtype)
    return Image(header=header, height=height, width=width, encoding=encoding,
                 is_bigendian=int(sys.byteorder == "big"), step=width * data.itemsize, data=data.tobytes())


def bgr8_image(image: np.ndarray, header: Header) -> Image:
    """sensor_msgs/Image (bgr8) from a BGR (H, W, 3) uint8 array, `header` copied."""
    height, width = image.shape[:2]
    return Image(header=header, height=height, width=width, encoding="bgr8", is_bigendian=0,
                 step=width * 3, data=np.ascontiguousarray(image).tobytes())
