"""Segment Anything: transformers' SamModel (SAM ViT-B/L/H, SlimSAM) and Sam2Model (SAM 2 / 2.1, Hiera tiny to
large) checkpoints, one mask per prompt box or point.

Two networks are exported from one checkpoint (NETWORKS), each its own cached artifact and session: the image
encoder, run once a frame, and the prompt encoder + mask decoder, run on a frame's prompts together (any
number of them: the prompt axis is dynamic). The last frame's encoding is kept, so new prompts on the same
frame cost only the decoder.

Pre- and post-processing are the processors', in numpy: SAM resizes the longest side to 1024 and pads to a
square, SAM 2 resizes to 1024 x 1024 (PIL bilinear, which torchvision's antialiased resize reproduces);
prompt coordinates are scaled as the image; the masks come back as `post_process_masks` brings them
(bilinear, > 0). Prompts are embedded as the prompt encoder embeds points and box corners (a box: its two
corners' embeddings, and SAM 2's padding point; a point: itself and the padding point), in one run for the
boxes and one for the points.

Named by the manifest as `vision_factory.models.sam:SAM`.
"""
from __future__ import annotations

import builtins
import importlib
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
from vision_factory.models.transformers_checkpoints import MultiNetworkCheckpoint

ENCODER, DECODER = "encoder", "decoder"
PIXELS = "pixel_values"
PROMPT_INPUTS = ["point_coords", "point_labels"]  # (1, N, tokens, 2) float32, (1, N, tokens) int64
DECODER_OUTPUTS = ["masks", "iou_scores"]  # (1, N, 4, 256, 256) logits; (1, N, 4): every mask token's
PROMPT_AXIS, TOKEN_AXIS = "prompts", "tokens"
PROMPTS_PER_RUN = 64  # a frame's prompts go through the decoder in runs of at most this many (bounded memory)
TYPICAL_PROMPTS = 8  # what a TensorRT engine is tuned for
OPENCV_MAX_CHANNELS = 512  # OpenCV resizes images of up to CV_CN_MAX channels (not exported by its Python module)
# The prompt encoder's point labels: a box's two corners, a foreground point, and transformers' padding point.
TOP_LEFT, BOTTOM_RIGHT, FOREGROUND, NOT_A_POINT = 2, 3, 1, -1
STABILITY = "mask_stability"  # decoder metadata: SAM 2's single-mask fallback (delta, threshold), if it has one


@dataclass(frozen=True)
class SamProcessing(ProcessorSettings):
    """SamImageProcessor's settings (SAM: the longest side to longest_edge, padded to pad_hw), or
    Sam2ImageProcessor's (SAM 2: resized to fixed_hw, the aspect not kept, no padding), as far as the node
    repeats them."""

    longest_edge: int = 1024
    pad_hw: tuple[int, int] = (1024, 1024)
    fixed_hw: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    mask_threshold: float = 0.0  # post_process_masks' default

    def read(self, weights: Path) -> "SamProcessing":
        """These settings as the preprocessor_config.json beside `weights` overrides them (if there is one)."""
        found = self.bilinear_config(weights)
        if found is None:
            return self
        path, config = found
        size, pad = config.get("size") or {}, config.get("pad_size") or {}
        settings = replace(self, **self.normalisation(config))
        if self.fixed_hw is not None:
            return replace(settings, fixed_hw=(int(size.get("height", self.fixed_hw[0])),
                                               int(size.get("width", self.fixed_hw[1]))))
        if not config.get("do_pad", True):
            raise ConfigError(f"{path}: SAM's encoder takes a padded square image: do_pad false is not supported")
        return replace(settings, longest_edge=int(size.get("longest_edge", self.longest_edge)),
                       pad_hw=(int(pad.get("height", self.pad_hw[0])), int(pad.get("width", self.pad_hw[1]))))

    @property
    def input_hw(self) -> tuple[int, int]:
        """The encoder's input (height, width)."""
        return self.fixed_hw or self.pad_hw

    def resized_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the frame resized (SAM: its longest side to longest_edge, _get_preprocess_shape)."""
        if self.fixed_hw is not None:
            return self.fixed_hw
        scale = self.longest_edge * 1.0 / max(frame_hw)
        return int(frame_hw[0] * scale + 0.5), int(frame_hw[1] * scale + 0.5)

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR (H, W, 3) uint8 -> the encoder's (1, 3, h, w) float32: resized, normalised, zero-padded right and
        below to input_hw."""
        resized_hw = self.resized_hw(image_bgr.shape[:2])
        blob = normalised_blob(pil_resized_rgb(image_bgr, resized_hw, Image.Resampling.BILINEAR), self.mean, self.std)
        padded = np.zeros((1, 3, *self.input_hw), np.float32)
        padded[:, :, :resized_hw[0], :resized_hw[1]] = blob
        return padded

    def scale_coordinates(self, xy: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """Frame pixel coordinates (..., 2) -> the resized image's, as the processor scales points and boxes."""
        resized_hw = self.resized_hw(frame_hw)
        return (xy * np.array([resized_hw[1] / frame_hw[1], resized_hw[0] / frame_hw[0]], np.float32)).astype(
            np.float32)

    def masks(self, logits: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """(N, h, w) low-resolution mask logits -> (N, H, W) bool at the frame's size, as post_process_masks
        (bilinear with half-pixel centres, OpenCV's INTER_LINEAR): SAM's to the padded size, the padding cut
        off, then to the frame; SAM 2's to the frame at once. True above mask_threshold."""
        resized_hw = self.resized_hw(frame_hw)
        result = np.zeros((len(logits), *frame_hw), bool)
        for start in range(0, len(logits), OPENCV_MAX_CHANNELS):
            stack = np.ascontiguousarray(logits[start:start + OPENCV_MAX_CHANNELS].transpose(1, 2, 0), np.float32)
            if self.fixed_hw is None:
                padded = cv2.resize(stack, self.pad_hw[::-1], interpolation=cv2.INTER_LINEAR)
                stack = np.ascontiguousarray(padded[:resized_hw[0], :resized_hw[1]])
            frame = cv2.resize(stack, frame_hw[::-1], interpolation=cv2.INTER_LINEAR).reshape(*frame_hw, -1)
            result[start:start + OPENCV_MAX_CHANNELS] = (frame > self.mask_threshold).transpose(2, 0, 1)
        return result


@dataclass(frozen=True)
class SamArchitecture:
    """What differs between SamModel and Sam2Model checkpoints, as far as the node goes."""

    modeling: str  # the transformers module of its mask decoder (see every_mask_token)
    features: tuple[str, ...]  # the encoder's outputs, which the decoder takes (SAM 2: two high-resolution maps)
    box_padding_point: bool  # SAM 2 embeds a box's corners with a padding point after them
    processing: SamProcessing  # its image processor's defaults

    def box_tokens(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) boxes -> the decoder's (N, tokens, 2) coordinates and (N, tokens) labels."""
        coords, labels = boxes.reshape(-1, 2, 2), [TOP_LEFT, BOTTOM_RIGHT]
        if self.box_padding_point:
            coords = np.concatenate([coords, np.zeros((len(boxes), 1, 2), np.float32)], 1)
            labels = labels + [NOT_A_POINT]
        return coords.astype(np.float32), np.tile(np.array(labels, np.int64), (len(boxes), 1))

    @staticmethod
    def point_tokens(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) points -> (N, 2, 2) coordinates and (N, 2) labels: the point, and the padding point
        transformers adds to point prompts without a box."""
        coords = np.stack([points, np.zeros_like(points)], axis=1).astype(np.float32)
        return coords, np.tile(np.array([FOREGROUND, NOT_A_POINT], np.int64), (len(points), 1))


ARCHITECTURES = {  # by config.model_type
    "sam": SamArchitecture("transformers.models.sam.modeling_sam", ("image_embeddings",), False, SamProcessing()),
    "sam2": SamArchitecture("transformers.models.sam2.modeling_sam2",
                            ("high_resolution_features_0", "high_resolution_features_1", "image_embeddings"), True,
                            SamProcessing(fixed_hw=(1024, 1024))),
}


@contextmanager
def every_mask_token(modeling: str) -> Iterator[None]:
    """The mask decoders compute a mask for each of their tokens and then keep the first (multimask_output
    False) or the other three: while this is active, called with multimask_output=True they keep all four, so
    one run serves both settings (the node chooses per frame, as the decoder would)."""
    module = importlib.import_module(modeling)
    module.slice = lambda *_: builtins.slice(None)  # its only use there: choosing the tokens
    try:
        yield
    finally:
        del module.slice


def image_encoder(sam: Any) -> Any:
    """The model's image encoder as a module: pixel_values -> its feature maps (SAM: image_embeddings; SAM 2:
    two high-resolution maps, already projected for the decoder, and image_embeddings with the no-memory
    embedding added, as Sam2Model.get_image_embeddings gives them)."""
    import torch

    class ImageEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sam = sam

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if hasattr(self.sam, "no_memory_embedding"):
                return tuple(self.sam.get_image_embeddings(pixel_values))
            return (self.sam.vision_encoder(pixel_values).last_hidden_state,)

    return ImageEncoder()


def prompt_decoder(sam: Any, architecture: SamArchitecture) -> Any:
    """The prompt encoder and mask decoder as one module: (*encoder features, point_coords, point_labels) ->
    (masks, iou_scores) of every mask token. Tokens are embedded as Sam2PromptEncoder embeds points, which is
    also what SamPromptEncoder does for points and box corners: the shared positional embedding of the
    pixel's centre, the padding point's own embedding for NOT_A_POINT, plus the label's point embedding."""
    import torch

    class PromptDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sam = sam

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            *features, point_coords, point_labels = inputs
            encoder = self.sam.prompt_encoder
            side = encoder.input_image_size
            table = encoder.point_embed  # SAM 2: one Embedding of the labels; SAM: one Embedding per label
            table = table.weight if isinstance(table, torch.nn.Embedding) else torch.cat([e.weight for e in table])
            labels = point_labels[..., None]
            sparse = encoder.shared_embedding(point_coords + 0.5, (side, side))
            sparse = torch.where(labels == NOT_A_POINT, encoder.not_a_point_embed.weight, sparse)
            sparse = sparse + table[point_labels.clamp(min=0)] * (labels >= 0)
            dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *encoder.image_embedding_size)
            high_resolution = {"high_resolution_features": features[:-1]} if len(features) > 1 else {}
            with every_mask_token(architecture.modeling):
                outputs = self.sam.mask_decoder(
                    image_embeddings=features[-1],
                    image_positional_embeddings=self.sam.get_image_wide_positional_embeddings(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
                    **high_resolution)
            return outputs[0], outputs[1]

    return PromptDecoder()


@dataclass(frozen=True)
class SamFamily(MultiNetworkCheckpoint):
    """The weights handler and model module of SamModel and Sam2Model checkpoints (vision_factory.models)."""

    model_type = "sam"
    family_name = "SAM"
    requirements = "sam.txt"
    NETWORKS = (ENCODER, DECODER)
    processing = ARCHITECTURES["sam"].processing

    @property
    def model_types(self) -> tuple[str, ...]:
        return tuple(ARCHITECTURES)

    def load_torch(self, weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
        """options["network"]'s module, image_encoder or prompt_decoder, and its metadata."""
        config, sam = self.load_pretrained(weights, options, "AutoModel")
        architecture = ARCHITECTURES[config.model_type]
        metadata = {"model_type": config.model_type}
        if options["network"] == ENCODER:
            return image_encoder(sam), {**metadata, "image_processing": architecture.processing.read(weights).to_json()}
        decoder_config = config.mask_decoder_config
        if getattr(decoder_config, "dynamic_multimask_via_stability", False):
            metadata[STABILITY] = json.dumps([decoder_config.dynamic_multimask_stability_delta,
                                              decoder_config.dynamic_multimask_stability_thresh])
        # TensorRT's optimization profile: 1 to PROMPTS_PER_RUN prompts a run, of 2 or 3 tokens
        metadata[DYNAMIC_AXIS_RANGES] = json.dumps({PROMPT_AXIS: [1, TYPICAL_PROMPTS, PROMPTS_PER_RUN],
                                                    TOKEN_AXIS: [2, 2, 3]})
        return prompt_decoder(sam, architecture), metadata

    def export_onnx(self, weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
        """The encoder (a fixed image size) or the decoder (any number of prompts) as ONNX."""
        import torch

        module, model_metadata = self.load_torch(weights, options)
        architecture = ARCHITECTURES[model_metadata["model_type"]]
        pixels = torch.zeros(1, 3, *architecture.processing.read(weights).input_hw)
        if options["network"] == ENCODER:
            return self.export_torchscript(module, (pixels,), dst, [PIXELS], list(architecture.features),
                                           model_metadata)
        with torch.no_grad():
            features = image_encoder(module.sam)(pixels)  # example inputs of the right shapes
        coords, labels = architecture.box_tokens(np.zeros((2, 4), np.float32))
        prompt_axes = {1: PROMPT_AXIS, 2: TOKEN_AXIS}
        return self.export_torchscript(
            module, (*features, torch.from_numpy(coords[None]), torch.from_numpy(labels[None])), dst,
            [*architecture.features, *PROMPT_INPUTS], DECODER_OUTPUTS, model_metadata,
            dynamic_axes={**{name: prompt_axes for name in PROMPT_INPUTS},
                          **{name: {1: PROMPT_AXIS} for name in DECODER_OUTPUTS}})

    def build_model(self, sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                    options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)) -> "SamSegmenter":
        return SamSegmenter(sessions[f"model.{ENCODER}"], sessions[f"model.{DECODER}"],
                            metadata[f"model.{ENCODER}"], metadata[f"model.{DECODER}"])


@dataclass(frozen=True)
class PromptBatch:
    """A frame's prompts in frame pixels, boxes first, and how each is echoed."""

    boxes: np.ndarray  # (B, 4)
    points: np.ndarray  # (P, 2)
    names: tuple[str, ...]  # class of each prompt (B + P)
    ids: tuple[str, ...]  # id of each prompt

    def __len__(self) -> int:
        return len(self.names)


def prompt_batch(prompts: Detections | None, boxes: np.ndarray, points: np.ndarray) -> PromptBatch:
    """A topic's detections (their boxes, classes and ids), then the `boxes`, then the `points` parameter's
    prompts (classes "box" / "point", ids "box<i>" / "point<i>")."""
    topic = prompts if prompts is not None else Detections.empty(())
    names = (tuple(topic.class_name(int(c)) for c in topic.class_ids) + (BOX_CLASS,) * len(boxes)
             + (POINT_CLASS,) * len(points))
    ids = (tuple(topic.track_ids or ("",) * len(topic)) + tuple(f"box{i}" for i in range(len(boxes)))
           + tuple(f"point{i}" for i in range(len(points))))
    return PromptBatch(np.concatenate([topic.boxes_xyxy.reshape(-1, 4), boxes]).astype(np.float32),
                       points.astype(np.float32).reshape(-1, 2), names, ids)


def chosen_tokens(logits: np.ndarray, iou: np.ndarray, multimask_output: bool,
                  stability: tuple[float, float] | None) -> np.ndarray:
    """Per prompt, the mask token the decoder would output, from every token's (N, 4, h, w) logits and (N, 4)
    predicted IoU: multimask_output, the best-scored of tokens 1 to 3; else token 0, unless (SAM 2) its mask
    is unstable (the share of pixels above +delta among those above -delta is under the threshold), then the
    best of 1 to 3 (Sam2MaskDecoder._dynamic_multimask_via_stability)."""
    best = 1 + iou[:, 1:].argmax(-1)
    if multimask_output:
        return best
    if stability is None:
        return np.zeros(len(iou), np.int64)
    delta, threshold = stability
    single = logits[:, 0].reshape(len(logits), -1)
    inner, outer = (single > delta).sum(-1), (single > -delta).sum(-1)
    stable = np.where(outer > 0, inner / np.maximum(outer, 1), 1.0) >= threshold
    return np.where(stable, 0, best)


class SamSegmenter:
    """Encode the frame (once per frame), decode every prompt, bring the masks back to the frame."""

    labels: tuple[str, ...] = ()  # masks carry their prompts' classes; the node publishes no class map

    def __init__(self, encoder: Session, decoder: Session, encoder_metadata: Mapping[str, str],
                 decoder_metadata: Mapping[str, str]):
        self.encoder, self.decoder = encoder, decoder
        self.architecture = ARCHITECTURES[encoder_metadata.get("model_type", "sam")]
        self.processing = (SamProcessing.from_json(encoder_metadata["image_processing"])
                           if "image_processing" in encoder_metadata else self.architecture.processing)
        self.stability = tuple(json.loads(decoder_metadata[STABILITY])) if STABILITY in decoder_metadata else None
        self._encoded: tuple[np.ndarray, list[np.ndarray]] | None = None  # (frame, its features): one attribute

    def features(self, image_bgr: np.ndarray) -> list[np.ndarray]:
        """The image encoder's outputs for this frame (the last frame's are reused when it is the same)."""
        encoded = self._encoded
        if encoded is not None and encoded[0].shape == image_bgr.shape and np.array_equal(encoded[0], image_bgr):
            return encoded[1]
        features = self.encoder.run({PIXELS: self.processing.preprocess(image_bgr)})
        self._encoded = (image_bgr.copy(), features)
        return features

    def decoder_inputs(self, features: list[np.ndarray], coords: np.ndarray, labels: np.ndarray,
                       frame_hw: tuple[int, int]) -> dict[str, np.ndarray]:
        """The decoder's inputs for one run: the frame's features and prompt tokens (coordinates in frame
        pixels, from box_tokens / point_tokens)."""
        return {**dict(zip(self.architecture.features, features)),
                PROMPT_INPUTS[0]: self.processing.scale_coordinates(coords, frame_hw)[None],
                PROMPT_INPUTS[1]: labels[None]}

    def decode(self, features: list[np.ndarray], batch: PromptBatch, frame_hw: tuple[int, int],
               multimask_output: bool) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) bool masks and (N,) predicted IoU of the batch's prompts (boxes, then points)."""
        masks, scores = [], []
        for coords, labels in (self.architecture.box_tokens(batch.boxes), self.architecture.point_tokens(batch.points)):
            for start in range(0, len(labels), PROMPTS_PER_RUN):
                part = slice(start, start + PROMPTS_PER_RUN)
                logits, iou = self.decoder.run(self.decoder_inputs(features, coords[part], labels[part], frame_hw))
                if not (np.isfinite(logits).all() and np.isfinite(iou).all()):
                    raise ValueError("the model output contains NaN or Inf (a broken export or a numeric overflow)")
                chosen = chosen_tokens(logits[0], iou[0], multimask_output, self.stability)
                rows = np.arange(len(chosen))
                masks.append(self.processing.masks(logits[0, rows, chosen], frame_hw))
                scores.append(iou[0, rows, chosen])
        if not masks:
            return np.zeros((0, *frame_hw), bool), np.zeros(0, np.float32)
        return np.concatenate(masks), np.concatenate(scores).astype(np.float32)

    def __call__(self, image_bgr: np.ndarray, boxes: str = "", points: str = "", multimask_output: bool = False,
                 prompts: Detections | None = None) -> Segmentation:
        """Masks of the prompts: `prompts` (a prompt topic's detections), then `boxes` and `points` (parameter
        text, see masks.parse_boxes / parse_points). No prompt: an empty result, and no encoding."""
        frame_hw = image_bgr.shape[:2]
        batch = prompt_batch(prompts, parse_boxes(boxes), parse_points(points))
        if not len(batch):
            return Segmentation(np.zeros(frame_hw, np.uint16), Detections.empty(()))
        masks, scores = self.decode(self.features(image_bgr), batch, frame_hw, multimask_output)
        echoed = np.concatenate([batch.boxes, mask_boxes(masks[len(batch.boxes):])])
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
