"""Segment Anything (transformers' SamModel: SAM ViT-B/L/H, SlimSAM): one mask per prompt box or point.

Two networks are exported from one checkpoint (NETWORKS), each its own cached artifact and session: the image
encoder, run once a frame, and the prompt encoder + mask decoder, run on a frame's prompts together (any
number of them: the prompt axis is dynamic). The last frame's encoding is kept, so new prompts on the same
frame cost only the decoder.

Pre- and post-processing are SamProcessor's, in numpy: resize the longest side to 1024 (PIL bilinear, which
torchvision's antialiased resize reproduces), normalise, pad to 1024 x 1024; prompt coordinates scaled as
the image; `post_process_masks` (bilinear to the padded size, crop, bilinear to the frame, > 0). A box is
prompted as its two corners with the prompt encoder's corner embeddings, a point as itself with the
padding point transformers adds, so both kinds share one decoder run and equal SamModel's own embedding.

Named by the manifest as `vision_factory.models.sam:SAM`.
"""
from __future__ import annotations

import builtins
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import cv2
import numpy as np
from PIL import Image

from vision_factory.backends.session import DYNAMIC_AXIS_RANGES, Session
from vision_factory.detections import Detections
from vision_factory.errors import ConfigError
from vision_factory.masks import BOX_CLASS, POINT_CLASS, Segmentation, label_image, mask_boxes, parse_boxes, \
    parse_points
from vision_factory.models.depth_processing import ProcessorSettings, normalised_blob, pil_resized_rgb
from vision_factory.models.transformers_checkpoints import HUB_ID, TransformersCheckpoint

ENCODER, DECODER = "encoder", "decoder"
ENCODER_INPUTS, ENCODER_OUTPUTS = ["pixel_values"], ["image_embeddings"]
DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels"]  # (1, C, h, w), (1, N, 2, 2), (1, N, 2)
DECODER_OUTPUTS = ["masks", "iou_scores"]  # (1, N, tokens, 256, 256) logits; (1, N, tokens): every mask token
PROMPT_AXIS = "prompts"
PROMPTS_PER_RUN = 64  # a frame's prompts go through the decoder in runs of at most this many (bounded memory)
TYPICAL_PROMPTS = 8  # what a TensorRT engine is tuned for
OPENCV_MAX_CHANNELS = 512  # OpenCV resizes images of up to CV_CN_MAX channels (not exported by its Python module)
# The prompt encoder's point labels: a box's two corners, a foreground point, and transformers' padding point.
TOP_LEFT, BOTTOM_RIGHT, FOREGROUND, NOT_A_POINT = 2, 3, 1, -1


@dataclass(frozen=True)
class SamProcessing(ProcessorSettings):
    """SamImageProcessor's settings, as far as the node repeats them."""

    longest_edge: int = 1024
    pad_hw: tuple[int, int] = (1024, 1024)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    mask_threshold: float = 0.0  # post_process_masks' default

    def read(self, weights: Path) -> "SamProcessing":
        """These settings as the preprocessor_config.json beside `weights` overrides them (if there is one)."""
        found = self.processor_config(weights)
        if found is None:
            return self
        path, config = found
        if config.get("resample", Image.Resampling.BILINEAR) != Image.Resampling.BILINEAR:
            raise ConfigError(f"{path}: only bilinear resampling (resample 2) is supported for this model")
        if not config.get("do_pad", True):
            raise ConfigError(f"{path}: SAM's encoder takes a padded square image: do_pad false is not supported")
        pad = config.get("pad_size") or {}
        return replace(self, longest_edge=int((config.get("size") or {}).get("longest_edge", self.longest_edge)),
                       pad_hw=(int(pad.get("height", self.pad_hw[0])), int(pad.get("width", self.pad_hw[1]))),
                       mean=tuple(config.get("image_mean", self.mean)), std=tuple(config.get("image_std", self.std)))

    def resized_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the frame resized so its longest side is longest_edge (_get_preprocess_shape)."""
        scale = self.longest_edge * 1.0 / max(frame_hw)
        return int(frame_hw[0] * scale + 0.5), int(frame_hw[1] * scale + 0.5)

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR (H, W, 3) uint8 -> (1, 3, pad_h, pad_w) float32: resized, normalised, zero-padded right and below."""
        resized_hw = self.resized_hw(image_bgr.shape[:2])
        blob = normalised_blob(pil_resized_rgb(image_bgr, resized_hw, Image.Resampling.BILINEAR), self.mean, self.std)
        padded = np.zeros((1, 3, *self.pad_hw), np.float32)
        padded[:, :, :resized_hw[0], :resized_hw[1]] = blob
        return padded

    def scale_coordinates(self, xy: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """Frame pixel coordinates (..., 2) -> the resized image's, as the processor scales points and boxes."""
        resized_hw = self.resized_hw(frame_hw)
        return (xy * np.array([resized_hw[1] / frame_hw[1], resized_hw[0] / frame_hw[0]], np.float32)).astype(
            np.float32)

    def masks(self, logits: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """(N, h, w) low-resolution mask logits -> (N, H, W) bool at the frame's size: post_process_masks
        (bilinear with half-pixel centres, as OpenCV's INTER_LINEAR, to the padded size; the padding cut off;
        bilinear to the frame; above mask_threshold)."""
        resized_hw = self.resized_hw(frame_hw)
        result = np.zeros((len(logits), *frame_hw), bool)
        for start in range(0, len(logits), OPENCV_MAX_CHANNELS):
            stack = np.ascontiguousarray(logits[start:start + OPENCV_MAX_CHANNELS].transpose(1, 2, 0), np.float32)
            padded = cv2.resize(stack, self.pad_hw[::-1], interpolation=cv2.INTER_LINEAR)
            cropped = np.ascontiguousarray(padded[:resized_hw[0], :resized_hw[1]])
            frame = cv2.resize(cropped, frame_hw[::-1], interpolation=cv2.INTER_LINEAR).reshape(*frame_hw, -1)
            result[start:start + OPENCV_MAX_CHANNELS] = (frame > self.mask_threshold).transpose(2, 0, 1)
        return result


@contextmanager
def every_mask_token() -> Iterator[None]:
    """SamMaskDecoder computes a mask for each of its tokens and then keeps the first (multimask_output False)
    or the other three: while this is active, called with multimask_output=True it keeps all four, so one run
    serves both settings (the node chooses per frame)."""
    from transformers.models.sam import modeling_sam

    modeling_sam.slice = lambda *_: builtins.slice(None)  # its only use: choosing the tokens
    try:
        yield
    finally:
        del modeling_sam.slice


def prompt_decoder(sam: Any) -> Any:
    """SamModel's prompt encoder and mask decoder as one module: (image_embeddings, point_coords, point_labels)
    -> (masks, iou_scores) of every mask token. Points are embedded as SamPromptEncoder embeds points and box
    corners (label TOP_LEFT / BOTTOM_RIGHT adds the corner's embedding, FOREGROUND the point's, NOT_A_POINT is
    the padding point's embedding)."""
    import torch

    class PromptDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sam = sam

        def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor,
                    point_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            encoder = self.sam.prompt_encoder
            side = encoder.input_image_size
            sparse = encoder.shared_embedding(point_coords + 0.5, (side, side))  # + 0.5: the pixel's centre
            labels = point_labels[..., None]
            sparse = torch.where(labels == NOT_A_POINT, encoder.not_a_point_embed.weight, sparse)
            for label, embedding in enumerate(encoder.point_embed):
                sparse = torch.where(labels == label, sparse + embedding.weight, sparse)
            dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                1, -1, *encoder.image_embedding_size)
            with every_mask_token():
                return self.sam.mask_decoder(
                    image_embeddings=image_embeddings,
                    image_positional_embeddings=self.sam.get_image_wide_positional_embeddings(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)

    return PromptDecoder()


@dataclass(frozen=True)
class SamFamily(TransformersCheckpoint):
    """The weights handler and model module of SamModel checkpoints (vision_factory.models)."""

    processing: SamProcessing = SamProcessing()
    model_type = "sam"
    requirements = "sam.txt"
    NETWORKS = (ENCODER, DECODER)

    def weights_problem(self, model: str) -> str:
        """'' if `model` is a transformers model folder or a Hugging Face model id (its two networks are
        exported from it: one .onnx file cannot be both)."""
        path = Path(model).expanduser()
        if path.is_dir() or (not path.exists() and HUB_ID.match(model)):
            return ""
        return f"model '{model}' is neither a transformers SAM model folder nor a Hugging Face model id"

    def options_for_frame(self, weights: Path, options: Mapping[str, Any],
                          frame_hw: tuple[int, int]) -> dict[str, Any]:
        """The same for every frame size: SAM pads every frame to one square."""
        return dict(options)

    def load_torch(self, weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
        """options["network"]'s module: the image encoder (pixel_values -> image_embeddings) or the prompt
        decoder (prompt_decoder), and its metadata."""
        import torch

        config, sam = self.load_pretrained(weights, options, "SamModel")
        if options["network"] == ENCODER:
            class ImageEncoder(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.sam = sam

                def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                    return self.sam.vision_encoder(pixel_values).last_hidden_state

            return ImageEncoder(), {"model_type": config.model_type,
                                    "image_processing": self.processing.read(weights).to_json()}
        return prompt_decoder(sam), {
            "model_type": config.model_type, "image_size": str(config.prompt_encoder_config.image_size),
            # TensorRT's optimization profile: 1 to PROMPTS_PER_RUN prompts a run
            DYNAMIC_AXIS_RANGES: json.dumps({PROMPT_AXIS: [1, TYPICAL_PROMPTS, PROMPTS_PER_RUN]})}

    def export_onnx(self, weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
        """The encoder (a fixed padded square) or the decoder (any number of prompts) as ONNX."""
        import torch

        module, model_metadata = self.load_torch(weights, options)
        if options["network"] == ENCODER:
            size = self.processing.read(weights).pad_hw
            return self.export_torchscript(module, (torch.zeros(1, 3, *size),), dst, ENCODER_INPUTS, ENCODER_OUTPUTS,
                                           model_metadata)
        config = module.sam.config
        embeddings = torch.zeros(1, config.vision_config.output_channels,
                                 *(config.prompt_encoder_config.image_embedding_size,) * 2)
        coords = torch.zeros(1, 2, 2, 2)
        labels = torch.tensor([[[TOP_LEFT, BOTTOM_RIGHT], [FOREGROUND, NOT_A_POINT]]], dtype=torch.int64)
        prompt_axis = {1: PROMPT_AXIS}
        return self.export_torchscript(module, (embeddings, coords, labels), dst, DECODER_INPUTS, DECODER_OUTPUTS,
                                       model_metadata, dynamic_axes={name: prompt_axis for name in
                                                                     (*DECODER_INPUTS[1:], *DECODER_OUTPUTS)})

    def build_model(self, sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                    options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)) -> "SamSegmenter":
        return SamSegmenter(sessions[f"model.{ENCODER}"], sessions[f"model.{DECODER}"],
                            metadata[f"model.{ENCODER}"], self)


@dataclass(frozen=True)
class PromptBatch:
    """A frame's prompts as the decoder takes them, in frame pixels, and how each is echoed."""

    coords: np.ndarray  # (N, 2, 2): a box's corners, or a point and the padding point
    labels: np.ndarray  # (N, 2) int64 point labels
    boxes: np.ndarray  # (N, 4) the echoed box (a point's: filled in from its mask)
    is_point: np.ndarray  # (N,) bool
    names: tuple[str, ...]  # class of each prompt
    ids: tuple[str, ...]  # id of each prompt

    def __len__(self) -> int:
        return len(self.labels)


def prompt_batch(prompts: Detections | None, boxes: np.ndarray, points: np.ndarray) -> PromptBatch:
    """A topic's detections (their boxes, classes and ids), then the `boxes`, then the `points` parameter's
    prompts (classes "box" / "point", ids "box<i>" / "point<i>")."""
    topic = prompts if prompts is not None else Detections.empty(())
    all_boxes = np.concatenate([topic.boxes_xyxy.reshape(-1, 4), boxes]).astype(np.float32)
    box_corners = all_boxes.reshape(-1, 2, 2)
    point_pairs = np.stack([points, np.zeros_like(points)], axis=1)
    labels = [[TOP_LEFT, BOTTOM_RIGHT]] * len(all_boxes) + [[FOREGROUND, NOT_A_POINT]] * len(points)
    names = (tuple(topic.class_name(int(c)) for c in topic.class_ids) + (BOX_CLASS,) * len(boxes)
             + (POINT_CLASS,) * len(points))
    ids = (tuple(topic.track_ids or ("",) * len(topic)) + tuple(f"box{i}" for i in range(len(boxes)))
           + tuple(f"point{i}" for i in range(len(points))))
    return PromptBatch(np.concatenate([box_corners, point_pairs]).astype(np.float32),
                       np.array(labels, np.int64).reshape(-1, 2),
                       np.concatenate([all_boxes, np.zeros((len(points), 4), np.float32)]),
                       np.arange(len(labels)) >= len(all_boxes), names, ids)


class SamSegmenter:
    """Encode the frame (once per frame), decode every prompt, bring the masks back to the frame."""

    labels: tuple[str, ...] = ()  # masks carry their prompts' classes; the node publishes no class map

    def __init__(self, encoder: Session, decoder: Session, metadata: Mapping[str, str], family: SamFamily):
        self.encoder, self.decoder = encoder, decoder
        self.processing = (SamProcessing.from_json(metadata["image_processing"]) if "image_processing" in metadata
                           else family.processing)
        self._encoded: tuple[np.ndarray, np.ndarray] | None = None  # (frame, its embeddings): one attribute

    def embeddings(self, image_bgr: np.ndarray) -> np.ndarray:
        """The image encoder's output for this frame (the last frame's is reused when it is the same)."""
        encoded = self._encoded
        if encoded is not None and encoded[0].shape == image_bgr.shape and np.array_equal(encoded[0], image_bgr):
            return encoded[1]
        embeddings = self.encoder.run({ENCODER_INPUTS[0]: self.processing.preprocess(image_bgr)})[0]
        self._encoded = (image_bgr.copy(), embeddings)
        return embeddings

    def decode(self, embeddings: np.ndarray, batch: PromptBatch, frame_hw: tuple[int, int],
               multimask_output: bool) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) bool masks and (N,) predicted IoU: per prompt the first mask token's (multimask_output
        false) or the best-scored of the other three (true), as SamModel chooses."""
        masks, scores = [], []
        coords = self.processing.scale_coordinates(batch.coords, frame_hw)
        for start in range(0, len(batch), PROMPTS_PER_RUN):
            part = slice(start, start + PROMPTS_PER_RUN)
            logits, iou = self.decoder.run({DECODER_INPUTS[0]: embeddings, DECODER_INPUTS[1]: coords[None, part],
                                            DECODER_INPUTS[2]: batch.labels[None, part]})
            if not (np.isfinite(logits).all() and np.isfinite(iou).all()):
                raise ValueError("the model output contains NaN or Inf (a broken export or a numeric overflow)")
            chosen = 1 + iou[0, :, 1:].argmax(-1) if multimask_output else np.zeros(iou.shape[1], np.int64)
            rows = np.arange(len(chosen))
            masks.append(self.processing.masks(logits[0, rows, chosen], frame_hw))
            scores.append(iou[0, rows, chosen])
        return np.concatenate(masks), np.concatenate(scores).astype(np.float32)

    def __call__(self, image_bgr: np.ndarray, boxes: str = "", points: str = "", multimask_output: bool = False,
                 prompts: Detections | None = None) -> Segmentation:
        """Masks of the prompts: `prompts` (a prompt topic's detections), then `boxes` and `points` (parameter
        text, see masks.parse_boxes / parse_points). No prompt: an empty result, and no encoding."""
        frame_hw = image_bgr.shape[:2]
        batch = prompt_batch(prompts, parse_boxes(boxes), parse_points(points))
        if not len(batch):
            return Segmentation(np.zeros(frame_hw, np.uint16), Detections.empty(()))
        masks, scores = self.decode(self.embeddings(image_bgr), batch, frame_hw, multimask_output)
        echoed = np.where(batch.is_point[:, None], mask_boxes(masks), batch.boxes)
        labels = tuple(dict.fromkeys(batch.names))
        return Segmentation(label_image(masks, scores), Detections(
            echoed.astype(np.float32), scores, np.array([labels.index(n) for n in batch.names], np.int64), labels,
            batch.ids))

    def option_problem(self, name: str, value: Any) -> str:
        """'' if a `boxes` / `points` parameter's text parses, else why not."""
        parse = {"boxes": parse_boxes, "points": parse_points}.get(name)
        try:
            if parse is not None:
                parse(str(value))
        except ValueError as e:
            return str(e)
        return ""


SAM = SamFamily()
