"""Grounding DINO open-vocabulary detection (transformers' GroundingDinoForObjectDetection): the classes are
the phrases of a text prompt, read every frame, so a new prompt applies to the next frame with no re-export.

Weights are handled as for every transformers checkpoint (transformers_checkpoints): one export per image
size, the text length dynamic. The export carries the checkpoint's tokenizer and image processor settings
in its metadata, so the onnx and openvino nodes tokenise (grounding_text), preprocess and postprocess in
numpy, with neither torch nor transformers, as transformers' processor does: resize keeping the aspect
ratio (shortest edge 800, longest at most 1333) and `post_process_grounded_object_detection`.

Named by the manifest as `vision_factory.models.grounding_dino:GROUNDING_DINO`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from vision_factory.backends.session import DYNAMIC_AXIS_RANGES, Session
from vision_factory.detections import Detections
from vision_factory.errors import ConfigError
from vision_factory.models.depth_processing import ProcessorSettings, normalised_blob, pil_resized_rgb
from vision_factory.models.grounding_text import Prompt, PromptTokenizer
from vision_factory.models.transformers_checkpoints import TransformersCheckpoint, network_input_hw

INPUT_NAMES = ["pixel_values", "input_ids", "token_type_ids", "attention_mask"]
OUTPUT_NAMES = ["logits", "pred_boxes"]  # (1, queries, max_text_len) token logits; (1, queries, 4) cx cy w h
DEFAULT_PROMPT = "person"
TEXT_AXIS = "tokens"  # the dynamic axis of the text inputs
TYPICAL_TOKENS = 16  # what a TensorRT engine is tuned for: a prompt of a few phrases


@dataclass(frozen=True)
class GroundingDinoProcessing(ProcessorSettings):
    """GroundingDinoImageProcessor's settings, as far as the node repeats them (one image: no padding)."""

    shortest_edge: int = 800
    longest_edge: int = 1333
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def read(self, weights: Path) -> "GroundingDinoProcessing":
        """These settings as the preprocessor_config.json beside `weights` overrides them (if there is one)."""
        found = self.bilinear_config(weights)
        if found is None:
            return self
        path, config = found
        size = config.get("size") or {}
        if set(size) - {"shortest_edge", "longest_edge"}:
            raise ConfigError(f"{path}: only a size of shortest_edge and longest_edge is supported, not {size}")
        return replace(self, shortest_edge=int(size.get("shortest_edge", self.shortest_edge)),
                       longest_edge=int(size.get("longest_edge", self.longest_edge)), **self.normalisation(config))

    def network_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the resized frame, as transformers' get_size_with_aspect_ratio gives it."""
        height, width = frame_hw
        size, raw_size = self.shortest_edge, None
        short, long = float(min(frame_hw)), float(max(frame_hw))
        if long / short * size > self.longest_edge:
            raw_size = self.longest_edge * short / long
            size = int(round(raw_size))
        if min(height, width) == size:
            return height, width
        scaled = raw_size if raw_size is not None else size
        if width < height:
            return int(scaled * height / width), size
        return size, int(scaled * width / height)

    def preprocess(self, image_bgr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """BGR (H, W, 3) uint8 -> (1, 3, h, w) float32 RGB: resized bilinearly with antialiasing
        (torchvision's, which reproduces PIL's: PIL resizes here), rescaled, normalised."""
        return normalised_blob(pil_resized_rgb(image_bgr, size_hw, Image.Resampling.BILINEAR), self.mean, self.std)


def exportable_text_masks(input_ids: Any, special_tokens: Any) -> tuple[Any, Any]:
    """transformers' generate_masks_with_special_tokens_and_transfer_map (each token attends to the tokens
    of its own phrase; position ids restart after each delimiter), built from comparisons and masked max /
    min: its isin, cummax and bool eye do not export to ONNX (or run in onnxruntime)."""
    import torch

    batch, length = input_ids.shape
    special = (input_ids.unsqueeze(-1) == special_tokens).any(-1)
    index = torch.arange(length, device=input_ids.device)
    row, column = index.view(1, length, 1), index.view(1, 1, length)
    special_at_column = special.unsqueeze(1)
    previous = torch.where(special_at_column & (column < row), column.expand(batch, length, length),
                           torch.full((), -1, device=input_ids.device)).amax(-1)
    following = torch.where(special_at_column & (column >= row), column.expand(batch, length, length),
                            torch.full((), length, device=input_ids.device)).amin(-1)
    valid = (following != 0) & (following != length - 1) & (following != length)
    attention = (row == column) | ((following.unsqueeze(2) == following.unsqueeze(1)) & valid.unsqueeze(1))
    positions = torch.where(valid, index.view(1, length) - previous - 1, torch.zeros_like(previous))
    return attention, positions.clamp(min=0).long()


def cast_grids_to_float(model: Any) -> None:
    """Make every GridSample's grid in the onnx ModelProto float32: the TorchScript exporter computes some of
    the deformable attention's sampling grids in float64, which onnxruntime has no GridSample kernel for."""
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {value.name: value.type.tensor_type.elem_type
             for value in [*inferred.graph.value_info, *inferred.graph.input]}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "GridSample" and types.get(node.input[1]) == TensorProto.DOUBLE:
            grid = f"{node.input[1]}_float"
            nodes.append(helper.make_node("Cast", [node.input[1]], [grid], to=TensorProto.FLOAT, name=f"{grid}_cast"))
            node.input[1] = grid
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


@dataclass(frozen=True)
class GroundingDinoFamily(TransformersCheckpoint):
    """The weights handler and model module of Grounding DINO checkpoints (vision_factory.models)."""

    processing: GroundingDinoProcessing = GroundingDinoProcessing()
    model_type = "grounding-dino"
    requirements = "grounding_dino.txt"

    def load_torch(self, weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
        """The network returning (logits, pred_boxes) for (pixel_values, input_ids, token_type_ids,
        attention_mask), and its metadata: the tokenizer, the image processor's settings, max_text_len."""
        import torch

        config, network = self.load_pretrained(weights, options, "AutoModelForZeroShotObjectDetection")
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(weights),
                                                      trust_remote_code=bool(options.get("trust_remote_code")))
        except (ValueError, OSError) as e:
            raise ConfigError(f"cannot load the tokenizer of '{weights}': {str(e).splitlines()[0]}") from e
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"'{weights}' has no fast tokenizer (tokenizer.json), which the nodes tokenise with")

        class RawOutputs(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                        attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                outputs = self.network(pixel_values=pixel_values, input_ids=input_ids,
                                       token_type_ids=token_type_ids, attention_mask=attention_mask)
                return outputs.logits, outputs.pred_boxes

        return RawOutputs(), {"model_type": config.model_type, "max_text_len": str(config.max_text_len),
                              "tokenizer_json": tokenizer.backend_tokenizer.to_str(),
                              "image_processing": self.processing.read(weights).to_json(),
                              # TensorRT's optimization profile: prompts of 1 to max_text_len tokens
                              DYNAMIC_AXIS_RANGES: json.dumps({TEXT_AXIS: [1, TYPICAL_TOKENS, config.max_text_len]})}

    def export_onnx(self, weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
        """An ONNX file of a fixed image size (input_height x input_width) and any prompt length."""
        import torch
        from transformers.models.grounding_dino import modeling_grounding_dino as modeling

        module, model_metadata = self.load_torch(weights, options)
        prompt = PromptTokenizer(model_metadata["tokenizer_json"], int(model_metadata["max_text_len"]))("object")
        pixels = torch.zeros(1, 3, int(options["input_height"]), int(options["input_width"]))
        text = [torch.from_numpy(array) for array in (prompt.input_ids, prompt.token_type_ids, prompt.attention_mask)]
        shipped = modeling.generate_masks_with_special_tokens_and_transfer_map
        modeling.generate_masks_with_special_tokens_and_transfer_map = exportable_text_masks
        try:
            return self.export_torchscript(module, (pixels, *text), dst, INPUT_NAMES, OUTPUT_NAMES, model_metadata,
                                           dynamic_axes={name: {1: TEXT_AXIS} for name in INPUT_NAMES[1:]},
                                           repair=cast_grids_to_float)
        finally:
            modeling.generate_masks_with_special_tokens_and_transfer_map = shipped

    def build_model(self, sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                    options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)) -> "GroundingDinoDetector":
        return GroundingDinoDetector(sessions["model"], metadata["model"], self, options, logger)


class GroundingDinoDetector:
    """Tokenise the prompt (once per prompt), preprocess, run, decode as the processor does.

    Each box is published with the prompt's phrase that holds its most probable token among those above
    text_threshold, so class_id is always one of the prompt's phrases (the processor's text label joins every
    token above text_threshold, which can straddle phrases); a box with no such phrase is dropped."""

    def __init__(self, session: Session, metadata: Mapping[str, str], family: GroundingDinoFamily,
                 options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)):
        if "tokenizer_json" not in metadata:
            raise ConfigError("the model carries no tokenizer: use a transformers Grounding DINO folder (or an "
                              ".onnx file vision_factory exported from one)")
        self.session = session
        self.processing = (GroundingDinoProcessing.from_json(metadata["image_processing"])
                           if "image_processing" in metadata else family.processing)
        self.tokenizer = PromptTokenizer(metadata["tokenizer_json"], int(metadata.get("max_text_len", 256)))
        self.input_hw = network_input_hw(session, options, logger)
        self._tokenised: tuple[str, Prompt] | None = None  # one attribute: swapped whole between threads
        self.labels: tuple[str, ...] = ()  # the phrases of the prompt of the last frame

    def prompt(self, text: str) -> Prompt:
        """`text` tokenised (once per prompt text); ConfigError when it cannot be used."""
        tokenised = self._tokenised
        if tokenised is None or tokenised[0] != text:
            tokenised = self._tokenised = (text, self.tokenizer(text))
        return tokenised[1]

    def labels_for(self, frame_options: Mapping[str, Any]) -> tuple[str, ...]:
        """The class names of frames run with these options: the prompt's phrases."""
        try:
            return self.tokenizer(str(frame_options.get("prompt", DEFAULT_PROMPT))).phrases
        except ConfigError:  # a prompt this model refuses (the node logs that) labels nothing new
            return self.labels

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR (H, W, 3) uint8 -> the network's (1, 3, h, w) float32 input."""
        return self.processing.preprocess(image_bgr, self.input_hw or self.processing.network_size(image_bgr.shape[:2]))

    def postprocess(self, logits: np.ndarray, boxes: np.ndarray, prompt: Prompt, frame_hw: tuple[int, int],
                    box_threshold: float, text_threshold: float) -> Detections:
        """(1, queries, max_text_len) logits and (1, queries, 4) relative cx, cy, w, h -> detections in frame
        pixels, best score first. The score is the box's most probable token's (the processor's)."""
        if not (np.isfinite(boxes).all() and not np.isnan(logits).any()):
            raise ValueError("the model output contains NaN or Inf (a broken export or a numeric overflow)")
        probabilities = np.exp(-np.logaddexp(0.0, -logits[0]))  # sigmoid; padding tokens' -inf give 0
        scores = probabilities.max(-1)
        keep = np.flatnonzero(scores > box_threshold)
        tokens = probabilities[keep, :len(prompt.phrase_of_token)]
        phrase_scores = np.stack([np.where(tokens > text_threshold, tokens, 0.0)[:, prompt.phrase_of_token == k]
                                  .max(-1, initial=0.0) for k in range(len(prompt.phrases))], axis=1)
        best = phrase_scores.argmax(-1)
        labelled = phrase_scores[np.arange(len(keep)), best] > 0.0
        keep, best = keep[labelled], best[labelled]
        order = np.argsort(-scores[keep], kind="stable")
        keep, best = keep[order], best[order]
        centre, size = boxes[0, keep, :2], boxes[0, keep, 2:]
        height, width = frame_hw
        xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * np.array([width, height] * 2)
        return Detections(xyxy.astype(np.float32), scores[keep].astype(np.float32), best.astype(np.int64),
                          prompt.phrases)

    def network_inputs(self, image_bgr: np.ndarray, prompt: str = DEFAULT_PROMPT) -> dict[str, np.ndarray]:
        """The session's inputs for a frame and a prompt, by name."""
        tokens = self.prompt(prompt)
        return {"pixel_values": self.preprocess(image_bgr), "input_ids": tokens.input_ids,
                "token_type_ids": tokens.token_type_ids, "attention_mask": tokens.attention_mask}

    def __call__(self, image_bgr: np.ndarray, prompt: str = DEFAULT_PROMPT, box_threshold: float = 0.35,
                 text_threshold: float = 0.25) -> Detections:
        tokens = self.prompt(prompt)
        logits, boxes = self.session.run(self.network_inputs(image_bgr, prompt))
        self.labels = tokens.phrases
        return self.postprocess(logits, boxes, tokens, image_bgr.shape[:2], box_threshold, text_threshold)

    def option_problem(self, name: str, value: Any) -> str:
        """'' if a frame option's value can be used (a prompt that tokenises within the model's length)."""
        if name == "prompt":
            try:
                self.tokenizer(str(value))
            except ConfigError as e:
                return str(e)
        return ""


GROUNDING_DINO = GroundingDinoFamily()
