"""Baselines for the benchmarks: what users run today, each an rclpy node that calls a library's own
pipeline on every frame inside its subscription callback. Kept deliberately plain: yardsticks, not products.

    python -m vision_factory.tools.bench.baselines yolo --weights W.pt [--imgsz 640] [--device cpu]
        ultralytics YOLO(weights).predict, as yolo_ros and ultralytics_ros do        -> ~/detections
    python -m vision_factory.tools.bench.baselines pose --detector D.onnx --pose P.onnx
        rtmlib's Body pipeline (its YOLOX, then RTMPose in each box), onnxruntime    -> ~/poses
    python -m vision_factory.tools.bench.baselines depth --model FOLDER [--device cpu]
        transformers' depth-estimation pipeline                                      -> ~/inverse_depth_relative
    python -m vision_factory.tools.bench.baselines zero_shot --model FOLDER --prompt "person . bus"
        transformers' zero-shot-object-detection pipeline (Grounding DINO)           -> ~/detections
    python -m vision_factory.tools.bench.baselines sam --model FOLDER --boxes "x1,y1,x2,y2; ..."
        transformers' SamModel / Sam2Model with its processor, masks of fixed boxes  -> ~/masks
    python -m vision_factory.tools.bench.baselines florence2 --model FOLDER --task caption --max-new-tokens N
        transformers' Florence-2 generate(num_beams=1), post_process_generation      -> ~/text

Each subscribes to image_raw with the sensor-data QoS profile and publishes with the input header, in the
message types our nodes publish (so message building costs the same).
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

import numpy as np

# kind -> (node name, the topic under it: the per-frame topic our nodes publish the same answers on,
# named as in vision_factory.output_kinds)
NODES = {"yolo": ("ultralytics_predict", "detections"), "pose": ("rtmlib_body", "poses"),
         "depth": ("transformers_depth_pipeline", "inverse_depth_relative"),
         "zero_shot": ("transformers_zero_shot_pipeline", "detections"), "sam": ("transformers_sam", "masks"),
         "florence2": ("transformers_florence2", "text")}


def ultralytics_predict(args: argparse.Namespace) -> tuple[type, Callable[[Any], Any]]:
    from vision_msgs.msg import Detection2DArray

    from vision_factory.detections import Detections
    from vision_factory.models.yolo_weights import load_checkpoint
    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.ros.messages import detection_array

    model = load_checkpoint(args.weights)
    names = tuple(model.names[i] for i in sorted(model.names))

    def answer(msg: Any) -> Detection2DArray:
        boxes = model.predict(image_to_bgr(msg), imgsz=args.imgsz, conf=0.25, device=args.device,
                              verbose=False)[0].boxes
        detections = Detections(boxes.xyxy.numpy().astype(np.float32), boxes.conf.numpy().astype(np.float32),
                                boxes.cls.numpy().astype(np.int64), names)
        return detection_array(detections, msg.header)

    return Detection2DArray, answer


def rtmlib_body(args: argparse.Namespace) -> tuple[type, Callable[[Any], Any]]:
    import onnxruntime
    from rtmlib import Body
    from vision_factory_msgs.msg import KeypointPoseArray

    from vision_factory.models.rtmpose import skeleton_for
    from vision_factory.poses import Poses
    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.ros.pose_messages import pose_array

    def input_size(path: str) -> tuple[int, int]:  # rtmlib wants the size it would otherwise guess wrong
        height, width = onnxruntime.InferenceSession(path).get_inputs()[0].shape[2:4]
        return width, height

    body = Body(det=args.detector, det_input_size=input_size(args.detector)[::-1], pose=args.pose,
                pose_input_size=input_size(args.pose), backend="onnxruntime", device="cpu")

    def answer(msg: Any) -> KeypointPoseArray:
        image = image_to_bgr(msg)
        boxes = body.det_model(image)  # Body.__call__'s two steps, kept apart to publish the boxes too
        keypoints, scores = body.pose_model(image, bboxes=boxes)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        keypoints, scores = keypoints[:len(boxes)], scores[:len(boxes)]
        return pose_array(Poses(boxes, np.zeros(len(boxes), np.float32), keypoints.astype(np.float32),
                                scores.astype(np.float32), skeleton_for(keypoints.shape[1])), msg.header)

    return KeypointPoseArray, answer


def transformers_pipeline(args: argparse.Namespace) -> tuple[type, Callable[[Any], Any]]:
    from PIL import Image as PilImage
    from sensor_msgs.msg import Image
    from transformers import pipeline

    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.ros.messages import depth_image

    estimate = pipeline("depth-estimation", model=args.model, device=args.device)

    def answer(msg: Any) -> Image:
        rgb = np.ascontiguousarray(image_to_bgr(msg)[:, :, ::-1])
        predicted = estimate(PilImage.fromarray(rgb))["predicted_depth"]  # already at the frame's size
        return depth_image(predicted.numpy().astype(np.float32), msg.header)

    return Image, answer


def transformers_zero_shot(args: argparse.Namespace) -> tuple[type, Callable[[Any], Any]]:
    from PIL import Image as PilImage
    from transformers import pipeline
    from vision_msgs.msg import Detection2DArray

    from vision_factory.detections import Detections
    from vision_factory.models.grounding_text import phrases
    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.ros.messages import detection_array

    detect = pipeline("zero-shot-object-detection", model=args.model, device=args.device)
    labels = phrases(args.prompt)

    def answer(msg: Any) -> Detection2DArray:
        rgb = np.ascontiguousarray(image_to_bgr(msg)[:, :, ::-1])
        found = detect(PilImage.fromarray(rgb), candidate_labels=list(labels), threshold=0.35)
        boxes = np.array([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in found], np.float32)
        names = [d["label"] for d in found]
        detections = Detections(boxes.reshape(-1, 4), np.array([d["score"] for d in found], np.float32),
                                np.array([labels.index(n) if n in labels else -1 for n in names], np.int64), labels)
        return detection_array(detections, msg.header)

    return Detection2DArray, answer


def transformers_sam(args: argparse.Namespace) -> tuple[type, Callable[[Any], Any]]:
    """transformers has no SAM pipeline for prompts: its processor, the model and post_process_masks, as its
    documentation runs them; the masks published as our nodes publish them (a mono16 label image)."""
    import torch
    from sensor_msgs.msg import Image
    from transformers import AutoModel, AutoProcessor

    from vision_factory.masks import label_image, parse_boxes
    from vision_factory.image_conversion import image_to_bgr
    from vision_factory.ros.messages import mono16_image

    processor = AutoProcessor.from_pretrained(args.model)
    network = AutoModel.from_pretrained(args.model).to(args.device).eval()
    boxes = parse_boxes(args.boxes).tolist()

    def answer(msg: Any) -> Image:
        rgb = np.ascontiguousarray(image_to_bgr(msg)[:, :, ::-1])
        inputs = processor(images=rgb, input_boxes=[boxes], return_tensors="pt").to(args.device)
        with torch.no_grad():
            outputs = network(**inputs, multimask_output=False)
        sizes = [inputs["original_sizes"]] + ([inputs["reshaped_input_sizes"]] if "reshaped_input_sizes" in inputs
                                               else [])
        post = getattr(processor, "post_process_masks", None) or processor.image_processor.post_process_masks
        masks = post(outputs.pred_masks.cpu(), *[size.cpu() for size in sizes])[0][:, 0].numpy()
        return mono16_image(label_image(masks, outputs.iou_scores[0, :, 0].cpu().numpy()), msg.header)

    return Image, answer


def transformers_florence2(args: argparse.Namespace) -> tuple[type, Callable[[Any], Any]]:
    """Florence-2 as its model card runs it: the processor, generate (greedy, as the node decodes),
    batch_decode, post_process_generation; the answer's text published as our nodes publish it."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from vision_factory_msgs.msg import GeneratedText

    from vision_factory.models.florence2_tasks import TASKS
    from vision_factory.image_conversion import image_to_bgr

    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model).to(args.device).eval()
    token = TASKS[args.task].token

    def answer(msg: Any) -> GeneratedText:
        image = image_to_bgr(msg)
        inputs = processor(text=token, images=np.ascontiguousarray(image[:, :, ::-1]), return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs.to(args.device), num_beams=1, do_sample=False,
                                 max_new_tokens=args.max_new_tokens)
        text = processor.batch_decode(ids, skip_special_tokens=False)[0]
        parsed = processor.post_process_generation(text, task=token, image_size=(image.shape[1], image.shape[0]))
        return GeneratedText(header=msg.header, task=args.task, text=str(parsed[token]))

    return GeneratedText, answer


BASELINES = {"yolo": ultralytics_predict, "pose": rtmlib_body, "depth": transformers_pipeline,
             "zero_shot": transformers_zero_shot, "sam": transformers_sam, "florence2": transformers_florence2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="baselines", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=list(BASELINES))
    parser.add_argument("--weights", help="yolo: a .pt checkpoint")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--detector", help="pose: an end-to-end YOLOX .onnx")
    parser.add_argument("--pose", help="pose: an RTMPose .onnx")
    parser.add_argument("--model", help="depth, zero_shot, sam, florence2: a transformers model folder or id")
    parser.add_argument("--prompt", default="person", help="zero_shot: phrases separated by dots")
    parser.add_argument("--boxes", default="", help="sam: prompt boxes, x1,y1,x2,y2 separated by ';'")
    parser.add_argument("--task", default="caption", help="florence2: the task")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="florence2: the longest answer")
    parser.add_argument("--device", default="cpu")
    args, ros_args = parser.parse_known_args(argv)

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from vision_factory.ros.node import init_until_signalled

    stopping = init_until_signalled(ros_args)
    name, topic = NODES[args.kind]
    node = rclpy.create_node(name)
    answer_type, answer = BASELINES[args.kind](args)
    publisher = node.create_publisher(answer_type, f"~/{topic}", 10)
    node.create_subscription(Image, "image_raw", lambda msg: publisher.publish(answer(msg)), qos_profile_sensor_data)
    while not stopping.is_set():
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
