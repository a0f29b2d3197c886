"""vision_msgs and sensor_msgs building."""
import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from vision_factory.detections import Detections
from vision_factory.ros import messages

HEADER = Header(stamp=Time(sec=17, nanosec=250), frame_id="camera_optical_frame")
LABELS = ("person", "bicycle")


def test_detection_array_copies_the_header_and_uses_centre_size_in_pixels() -> None:
    detections = Detections(np.array([[10, 20, 50, 100], [0, 0, 3, 5]], np.float32),
                            np.array([0.9, 0.4], np.float32), np.array([1, 7]), LABELS)
    msg = messages.detection_array(detections, HEADER)
    assert msg.header == HEADER and len(msg.detections) == 2
    first = msg.detections[0]
    assert first.header == HEADER and first.id == ""
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (30.0, 60.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (40.0, 80.0)
    assert len(first.results) == 1
    assert first.results[0].hypothesis.class_id == "bicycle"
    assert abs(first.results[0].hypothesis.score - 0.9) < 1e-6
    assert msg.detections[1].results[0].hypothesis.class_id == "7"  # no name: the id as text


def test_track_ids_go_into_detection2d_id() -> None:
    detections = Detections(np.array([[10, 20, 50, 100], [0, 0, 3, 5]], np.float32),
                            np.array([0.9, 0.4], np.float32), np.array([1, 7]), LABELS, track_ids=("12", ""))
    assert [d.id for d in messages.detection_array(detections, HEADER).detections] == ["12", ""]


def test_empty_detections_still_make_a_message() -> None:
    msg = messages.detection_array(Detections.empty(LABELS), HEADER)
    assert msg.header == HEADER and msg.detections == []


def test_label_info_lists_every_class() -> None:
    msg = messages.label_info(LABELS, 0.25, HEADER)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, "person"), (1, "bicycle")]
    assert abs(msg.threshold - 0.25) < 1e-6


def test_bgr8_image_round_trips() -> None:
    from vision_factory.image_conversion import image_to_bgr

    image = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    msg = messages.bgr8_image(image, HEADER)
    assert (msg.encoding, msg.width, msg.height, msg.step, msg.header) == ("bgr8", 6, 4, 18, HEADER)
    np.testing.assert_array_equal(image_to_bgr(msg), image)


# vision_msgs 4.1.1 (ros-perception/vision_msgs, ROS 2 branch), field for field: the test stand-in (and
# any vision_msgs a user has) must lay messages out as upstream does, or the CDR bytes differ.
UPSTREAM_FIELDS = {
    "Point2D": ["x", "y"],
    "Pose2D": ["position", "theta"],
    "BoundingBox2D": ["center", "size_x", "size_y"],
    "ObjectHypothesis": ["class_id", "score"],
    "ObjectHypothesisWithPose": ["hypothesis", "pose"],
    "Detection2D": ["header", "results", "bbox", "id"],
    "Detection2DArray": ["header", "detections"],
    "VisionClass": ["class_id", "class_name"],
    "LabelInfo": ["header", "class_map", "threshold"],
    "VisionInfo": ["header", "method", "database_location", "database_version"],
}


def test_vision_msgs_lays_out_every_message_as_upstream() -> None:
    import vision_msgs.msg

    for name, fields in UPSTREAM_FIELDS.items():
        assert list(getattr(vision_msgs.msg, name).get_fields_and_field_types()) == fields, name
