"""Each output kind's publishers are made from its description (vision_factory.output_kinds): every topic
under the node, with the described QoS, a QoS that can be overridden at launch, and names that compose
with a namespace as image_pipeline's do (input in the namespace, outputs under the node in it)."""
from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.qos import DurabilityPolicy  # noqa: E402

from node_harness import next_domain  # noqa: E402
from vision_factory.manifest import load_manifest  # noqa: E402
from vision_factory.parameters import node_parameters  # noqa: E402
from vision_factory.ros.node import InferenceNode  # noqa: E402


@pytest.mark.parametrize("model", ["yolo", "rtmpose", "depth_anything"])
def test_publishers_follow_the_output_kind_table_in_a_namespace(model: str) -> None:
    manifest = load_manifest(model)
    backend = manifest.backend("onnx")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=next_domain())
    try:
        # Managed: nothing is loaded before configure, the publishers exist from the start.
        node = InferenceNode(f"{model}_onnx", model, "onnx", node_parameters(manifest, backend), managed=True,
                             context=context, namespace="front")
        try:
            kind = manifest.output_kind
            published = {name for name, _ in node.get_publisher_names_and_types_by_node(f"{model}_onnx", "/front")}
            expected = {f"/front/{model}_onnx/{t.name}" for t in kind.topics if not t.enabled_by}
            assert expected <= published
            assert not {f"/front/{model}_onnx/{t.name}" for t in kind.topics if t.enabled_by} & published
            assert [i.topic for i in node._inputs] == ["/front/image_raw"]
            for topic in kind.topics:
                if topic.enabled_by:
                    continue
                name = f"/front/{model}_onnx/{topic.name}"
                info, = node.get_publishers_info_by_topic(name)
                assert info.topic_type == topic.message
                durability = DurabilityPolicy.TRANSIENT_LOCAL if topic.latched else DurabilityPolicy.VOLATILE
                assert info.qos_profile.durability == durability, name
                assert node.has_parameter(f"qos_overrides.{name}.publisher.reliability"), name
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_a_publishers_qos_can_be_overridden_at_launch() -> None:
    """What the README shows: -p qos_overrides./yolo_onnx/detections.publisher.reliability:=best_effort."""
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    manifest = load_manifest("yolo")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=next_domain())
    try:
        override = Parameter("qos_overrides./yolo_onnx/detections.publisher.reliability", value="best_effort")
        node = InferenceNode("yolo_onnx", "yolo", "onnx", node_parameters(manifest, manifest.backend("onnx")),
                             managed=True, context=context, parameter_overrides=[override])
        try:
            detections, = node.get_publishers_info_by_topic("/yolo_onnx/detections")
            labels, = node.get_publishers_info_by_topic("/yolo_onnx/label_info")
            assert detections.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
            assert labels.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
