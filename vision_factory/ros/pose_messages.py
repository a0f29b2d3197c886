"""Building the vision_factory_msgs pose messages. Imported by pose nodes only: vision_factory_msgs is
built in the user's workspace, next to the generated pose packages."""
from __future__ import annotations

from std_msgs.msg import Header
from vision_factory_msgs.msg import Keypoint, KeypointPose, KeypointPoseArray, KeypointSkeleton
from vision_msgs.msg import BoundingBox2D

from vision_factory.poses import Poses, Skeleton


def pose_array(poses: Poses, header: Header) -> KeypointPoseArray:
    """KeypointPoseArray with `header` copied: per pose its box (centre and size), the box score and every
    keypoint in skeleton order (x = y = NaN below the keypoint threshold)."""
    out = KeypointPoseArray(header=header)
    for box, score, keypoints, keypoint_scores in zip(poses.boxes_xyxy.tolist(), poses.scores.tolist(),
                                                       poses.keypoints.tolist(), poses.keypoint_scores.tolist()):
        bbox = BoundingBox2D(size_x=box[2] - box[0], size_y=box[3] - box[1])
        bbox.center.position.x, bbox.center.position.y = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        out.poses.append(KeypointPose(bbox=bbox, score=score, keypoints=[
            Keypoint(x=x, y=y, score=s) for (x, y), s in zip(keypoints, keypoint_scores)]))
    return out


def skeleton(value: Skeleton, header: Header) -> KeypointSkeleton:
    """KeypointSkeleton: the keypoint names and limbs, published once on a latched topic."""
    return KeypointSkeleton(header=header, name=value.name, keypoint_names=list(value.keypoint_names),
                            edge_start=[a for a, _ in value.edges], edge_end=[b for _, b in value.edges])
