"""Florence-2: transformers' native Florence2ForConditionalGeneration checkpoints (florence-community/
Florence-2-base and -large), one model for captions, detection, phrase grounding and OCR, chosen per frame
by the `task` parameter.

Two networks are exported from one checkpoint (NETWORKS), each its own cached artifact and session:
- the encoder, once a frame: the DaViT vision tower and projector, the task prompt's embeddings after the
  image's (where the processor puts its image tokens), the BART encoder, and every decoder layer's
  cross-attention keys and values of the result (computed once, not once a token);
- the decoder, once a token: one token in, with the keys and values of the tokens before it (the
  self-attention cache) and the encoder's cross-attention ones, the next token's logits and the cache
  grown by one out. Generation is linear in tokens; tokens are chosen in numpy (vision_factory.generation)
  as generate(num_beams=1) chooses them.

The prompt is tokenised and the answer decoded with the checkpoint's own tokenizer (the `tokenizers`
library), and parsed as the processor's post_process_generation parses it (florence2_tasks): a cached
node needs neither torch nor transformers.

Named by the manifest as `vision_factory.models.florence2:FLORENCE2`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vision_factory.backends.session import DYNAMIC_AXIS_RANGES, OPENVINO_PROPERTIES, Session
from vision_factory.errors import ConfigError
from vision_factory.generated_text import GeneratedText
from vision_factory.generation import GenerationSettings
from vision_factory.models.depth_processing import ImageProcessing
from vision_factory.models.florence2_tasks import TASKS, parse, prompt_text, task_problem
from vision_factory.models.transformers_checkpoints import MultiNetworkCheckpoint, import_transformers

ENCODER, DECODER = "encoder", "decoder"
PIXELS, TOKENS, LOGITS = "pixel_values", "input_ids", "logits"
PROMPT_AXIS, ENCODED_AXIS, PAST_AXIS, LENGTH_AXIS = "prompt_tokens", "encoded_tokens", "past_tokens", "tokens"
TYPICAL_PROMPT, TYPICAL_ANSWER = 16, 64  # what a TensorRT engine is tuned for
# OpenVINO 2026.4's CPU plugin computes attention wrongly with its "snippets" subgraphs here: the encoder's
# cross-attention keys differ from onnxruntime's by up to 0.2, and once a zero-length cache (the first token)
# has been through the decoder, later lengths (16 and up) give wrong logits. Measured on random weights;
# without snippets both agree with onnxruntime to 1e-6.
OPENVINO_WORKAROUND = json.dumps({"SNIPPETS_MODE": "DISABLE"})


def cache_names(kind: str, layers: int) -> list[str]:
    """The names of one kind of cache tensors ("past", "present", "cross"), a key and a value per layer."""
    return [f"{kind}_{part}_{layer}" for layer in range(layers) for part in ("key", "value")]


def _heads(x: Any, attention: Any) -> Any:
    """(1, tokens, width) -> (1, heads, tokens, head width)."""
    return x.view(1, -1, attention.num_heads, attention.head_dim).transpose(1, 2)


def _attend(attention: Any, x: Any, keys: Any, values: Any) -> Any:
    """A BartAttention's output for queries from x over the given keys and values (eager attention)."""
    import torch

    queries = _heads(attention.q_proj(x), attention)
    weights = torch.softmax(torch.matmul(queries, keys.transpose(2, 3)) * attention.scaling, -1)
    mixed = torch.matmul(weights, values).transpose(1, 2).reshape(1, -1, attention.num_heads * attention.head_dim)
    return attention.out_proj(mixed)


def encoder_network(florence: Any) -> Any:
    """(pixel_values, prompt input_ids) -> every decoder layer's cross-attention keys and values."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.florence = florence

        def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
            model = self.florence.model
            image = model.get_image_features(pixel_values).pooler_output
            text = model.get_input_embeddings()(input_ids)
            encoded = model.language_model.encoder(inputs_embeds=torch.cat([image.to(text.dtype), text], 1))[0]
            cross = []
            for layer in model.language_model.decoder.layers:
                attention = layer.encoder_attn
                cross += [_heads(attention.k_proj(encoded), attention), _heads(attention.v_proj(encoded), attention)]
            return tuple(cross)

    return Encoder()


def decoder_network(florence: Any) -> Any:
    """(input_ids (1, 1), *past keys and values, *cross keys and values) -> (logits (1, vocab), *present keys
    and values): BartDecoder and the LM head for one token, its position the cache's length."""
    import torch

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.florence = florence

        def forward(self, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
            decoder = self.florence.model.language_model.decoder
            past, cross = caches[:len(caches) // 2], caches[len(caches) // 2:]
            position = torch._shape_as_tensor(past[0])[2:3] + decoder.embed_positions.offset  # traced, not fixed
            x = decoder.layernorm_embedding(decoder.embed_tokens(input_ids) + decoder.embed_positions.weight[position])
            present = []
            for index, layer in enumerate(decoder.layers):  # BartDecoderLayer, post-norm
                attention = layer.self_attn
                keys = torch.cat([past[2 * index], _heads(attention.k_proj(x), attention)], 2)
                values = torch.cat([past[2 * index + 1], _heads(attention.v_proj(x), attention)], 2)
                present += [keys, values]
                x = layer.self_attn_layer_norm(x + _attend(attention, x, keys, values))
                x = layer.encoder_attn_layer_norm(x + _attend(layer.encoder_attn, x, cross[2 * index],
                                                              cross[2 * index + 1]))
                x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
            return (self.florence.lm_head(x)[:, -1], *present)

    return Decoder()


@dataclass(frozen=True)
class DecoderShape:
    """The decoder's cache layout: layers, attention heads, head width, and the longest sequence it embeds."""

    layers: int
    heads: int
    head_dim: int
    max_positions: int

    def empty_cache(self) -> list[np.ndarray]:
        return [np.zeros((1, self.heads, 0, self.head_dim), np.float32)] * (2 * self.layers)


@dataclass(frozen=True)
class Florence2Family(MultiNetworkCheckpoint):
    """The weights handler and model module of Florence2ForConditionalGeneration checkpoints."""

    model_type = "florence2"
    family_name = "Florence-2"
    requirements = "florence2.txt"
    NETWORKS = (ENCODER, DECODER)

    def _processor(self, weights: Path, options: Mapping[str, Any]) -> Any:
        """The checkpoint's Florence2Processor (tokenizer, image processor, task prompts, parsing rules)."""
        transformers = import_transformers(self.requirements)
        try:
            return transformers.AutoProcessor.from_pretrained(
                str(weights), trust_remote_code=bool(options.get("trust_remote_code", False)))
        except (ValueError, OSError) as e:
            raise ConfigError(f"cannot load the processor of '{weights}': {str(e).splitlines()[0]}") from e

    def load_torch(self, weights: Path, options: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
        """options["network"]'s module, the encoder or the decoder, and its metadata (the encoder's: the
        image processing, tokenizer, task prompts and parsing rules; the decoder's: its cache layout and the
        generation settings)."""
        _, florence = self.load_pretrained(weights, options, "AutoModelForImageTextToText")
        if not hasattr(florence, "model") or not hasattr(florence.model, "language_model"):
            raise ConfigError(f"'{weights}' loads as {type(florence).__name__}, not transformers' own "
                              f"Florence2ForConditionalGeneration (use a florence-community/Florence-2-* "
                              f"checkpoint, which needs no remote code)")
        language = florence.model.language_model
        processor = self._processor(weights, options)
        # The encoder embeds the image's tokens and then the prompt's, at most max_position_embeddings in all.
        image_tokens = int(processor.num_image_tokens)
        prompt_range = [1, TYPICAL_PROMPT, language.config.max_position_embeddings - image_tokens]
        shared = {OPENVINO_PROPERTIES: OPENVINO_WORKAROUND}
        if options["network"] == DECODER:
            attention = language.decoder.layers[0].self_attn
            try:
                generation = GenerationSettings.from_config(florence.generation_config)
            except ValueError as e:
                raise ConfigError(f"'{weights}': {e}") from e
            shape = DecoderShape(len(language.decoder.layers), attention.num_heads, attention.head_dim,
                                 language.config.max_position_embeddings)
            ranges = {PAST_AXIS: [0, TYPICAL_ANSWER, shape.max_positions - 1],
                      ENCODED_AXIS: [image_tokens + length for length in prompt_range]}
            return decoder_network(florence), {**shared, "generation": generation.to_json(),
                                               "decoder_shape": json.dumps(shape.__dict__),
                                               DYNAMIC_AXIS_RANGES: json.dumps(ranges)}
        tokenizer, images = processor.tokenizer, processor.image_processor
        if not getattr(tokenizer, "backend_tokenizer", None):
            raise ConfigError(f"'{weights}' has no fast tokenizer (tokenizer.json), which the nodes tokenise with")
        size = dict(images.size)
        if "height" not in size or (images.do_center_crop and dict(images.crop_size) != size):
            raise ConfigError(f"'{weights}': only an image processor resizing to a fixed height and width (no "
                              f"crop) is supported, not size {size}")
        processing = ImageProcessing(size_hw=(int(size["height"]), int(size["width"])), keep_aspect_ratio=False,
                                     multiple=1, mean=tuple(images.image_mean), std=tuple(images.image_std),
                                     resample=int(images.resample))
        prompts = {**processor.task_prompts_without_inputs, **processor.task_prompts_with_input}
        return encoder_network(florence), {
            **shared, "image_processing": processing.to_json(),
            "tokenizer_json": tokenizer.backend_tokenizer.to_str(),
            "text_markers": json.dumps([tokenizer.bos_token, tokenizer.eos_token]),
            "clean_up_tokenization_spaces": json.dumps(bool(tokenizer.clean_up_tokenization_spaces)),
            "task_prompts": json.dumps(prompts),
            "post_processing": json.dumps(processor.post_processor_config or {}),
            DYNAMIC_AXIS_RANGES: json.dumps({PROMPT_AXIS: prompt_range})}

    def export_onnx(self, weights: Path, dst: Path, options: Mapping[str, Any], logger: Any) -> dict[str, str]:
        """The encoder (a fixed image size, any prompt length) or the decoder (any cache length) as ONNX."""
        import torch

        module, metadata = self.load_torch(weights, options)
        florence = module.florence
        layers = len(florence.model.language_model.decoder.layers)
        size = self._processor(weights, options).image_processor.size
        example = (torch.zeros(1, 3, int(size["height"]), int(size["width"])), torch.tensor([[0, 4, 2]]))
        cross_axes = {name: {2: ENCODED_AXIS} for name in cache_names("cross", layers)}
        if options["network"] == ENCODER:
            return self.export_torchscript(module, example, dst, [PIXELS, TOKENS], cache_names("cross", layers),
                                           metadata, dynamic_axes={TOKENS: {1: PROMPT_AXIS}, **cross_axes})
        with torch.no_grad():
            cross = encoder_network(florence)(*example)
        past = [torch.zeros(1, tensor.shape[1], 1, tensor.shape[3]) for tensor in cross]  # a cache of one token
        return self.export_torchscript(
            module, (torch.tensor([[0]]), *past, *cross), dst,
            [TOKENS, *cache_names("past", layers), *cache_names("cross", layers)],
            [LOGITS, *cache_names("present", layers)], metadata,
            dynamic_axes={**{name: {2: PAST_AXIS} for name in cache_names("past", layers)}, **cross_axes,
                          **{name: {2: LENGTH_AXIS} for name in cache_names("present", layers)}})

    def build_model(self, sessions: Mapping[str, Session], metadata: Mapping[str, Mapping[str, str]],
                    options: Mapping[str, Any], logger: Any = logging.getLogger(__name__)) -> "Florence2Generator":
        return Florence2Generator(sessions[f"model.{ENCODER}"], sessions[f"model.{DECODER}"],
                                  metadata[f"model.{ENCODER}"], metadata[f"model.{DECODER}"])


class Florence2Generator:
    """Encode the frame with the task's prompt, generate the answer token by token, parse it."""

    labels: tuple[str, ...] = ()  # regions carry the model's own words; the node publishes no class map

    def __init__(self, encoder: Session, decoder: Session, encoder_metadata: Mapping[str, str],
                 decoder_metadata: Mapping[str, str]):
        from tokenizers import Tokenizer

        if "tokenizer_json" not in encoder_metadata:
            raise ConfigError("the Florence-2 encoder export carries no tokenizer: export it from a transformers "
                              "model folder")
        self.encoder, self.decoder = encoder, decoder
        self.processing = ImageProcessing.from_json(encoder_metadata["image_processing"])
        self.tokenizer = Tokenizer.from_str(encoder_metadata["tokenizer_json"])
        self.markers = tuple(json.loads(encoder_metadata["text_markers"]))
        self.clean_up_spaces = bool(json.loads(encoder_metadata["clean_up_tokenization_spaces"]))
        self.templates = json.loads(encoder_metadata["task_prompts"])
        self.post_processing = json.loads(encoder_metadata["post_processing"])
        self.max_prompt_tokens = json.loads(encoder_metadata[DYNAMIC_AXIS_RANGES])[PROMPT_AXIS][-1]
        self.generation = GenerationSettings.from_json(decoder_metadata["generation"])
        self.shape = DecoderShape(**json.loads(decoder_metadata["decoder_shape"]))
        self._names = (cache_names("past", self.shape.layers), cache_names("cross", self.shape.layers))

    def prompt_ids(self, task: str, text_input: str = "") -> np.ndarray:
        """(1, tokens) int64: the task's prompt as the processor tokenises it after the image tokens."""
        bos, eos = self.markers
        text = f"{bos}{prompt_text(task, text_input, self.templates)}{eos}"
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) > self.max_prompt_tokens:
            raise ConfigError(f"the {task} prompt is {len(ids)} tokens; the model reads at most "
                              f"{self.max_prompt_tokens} (a shorter text_input)")
        return np.array([ids], np.int64)

    def generate(self, image_bgr: np.ndarray, task: str, text_input: str = "", max_new_tokens: int = 256) -> list[int]:
        """The token ids generate(num_beams=1) returns for this frame and task (the start token first)."""
        if max_new_tokens >= self.shape.max_positions:
            raise ConfigError(f"max_new_tokens {max_new_tokens}: the model's decoder embeds at most "
                              f"{self.shape.max_positions} positions")
        cross = self.encoder.run({PIXELS: self.processing.preprocess(image_bgr, self.processing.size_hw),
                                  TOKENS: self.prompt_ids(task, text_input)})
        past_names, cross_names = self._names
        feed = {**dict(zip(past_names, self.shape.empty_cache())), **dict(zip(cross_names, cross))}

        def step(token: int) -> np.ndarray:
            logits, *present = self.decoder.run({TOKENS: np.array([[token]], np.int64), **feed})
            feed.update(zip(past_names, present))
            return logits[0]

        return self.generation.greedy(step, max_new_tokens)

    def decode(self, tokens: list[int]) -> str:
        """The tokens as text, special tokens kept, as the processor's batch_decode gives it."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=False)
        if self.clean_up_spaces:  # transformers' clean_up_tokenization
            for spaced, joined in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                                   (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(spaced, joined)
        return text

    def __call__(self, image_bgr: np.ndarray, task: str = "caption", text_input: str = "",
                 max_new_tokens: int = 256) -> GeneratedText:
        """The frame's answer to the task, regions in frame pixels."""
        text = self.decode(self.generate(image_bgr, task, text_input, max_new_tokens))
        return parse(task, text, (image_bgr.shape[1], image_bgr.shape[0]), self.post_processing)

    def option_problem(self, name: str, value: Any) -> str:
        """'' if a `task` or `max_new_tokens` value can run, else why not."""
        if name == "task" and str(value) not in TASKS:
            return task_problem(str(value))
        if name == "max_new_tokens" and int(value) >= self.shape.max_positions:
            return f"the model's decoder embeds at most {self.shape.max_positions} positions"
        return ""


FLORENCE2 = Florence2Family()
