"""Stand-in models with the real models' exact signatures, for the tests and the benchmarks where real
weights cannot be had (no downloads here): ONNX files built with onnx.helper whose answers are known (an
RTMPose whose SimCC peaks sit at chosen bins, an end-to-end YOLOX returning chosen boxes, a depth model
returning its input), and the real transformers depth and Grounding DINO architectures built from configs
with fixed seeds.
Speed does not depend on weights' values, so the benchmark's depth rows are real; its pose network is a
known-answer stand-in (nearly no compute), so the pose rows measure the detector and the pipeline."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

INPUT_WH = (192, 256)  # RTMPose-m body: input (1, 3, 256, 192)
SPLIT = 2.0  # SimCC bins per input pixel
KEYPOINTS = 17
DETECTOR_INPUT = 640  # a 640x480 frame letterboxes at ratio 1: box coordinates pass through unchanged
# Peak values: rtmlib scores a keypoint as the mean of its x and y peaks.
PEAK_X, PEAK_Y = 0.9, 0.7


def peak_bins(keypoints: int = KEYPOINTS) -> np.ndarray:
    """(K, 2) SimCC bins (x, y) spread over the crop, away from its edges and not on a grid."""
    rng = np.random.default_rng(7)
    return np.stack([rng.integers(20, INPUT_WH[0] * SPLIT - 20, keypoints),
                     rng.integers(20, INPUT_WH[1] * SPLIT - 20, keypoints)], axis=1)


def _ignoring_input(name: str, constants: dict[str, np.ndarray], inputs: list, nodes_out: list[str]) -> Any:
    """A graph whose outputs are the constants plus 0 x mean(input): the input still feeds the graph, as
    a real model's does, so no runtime can prune it."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    outputs, initializers = [], [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    for output in nodes_out:
        value = constants[output]
        initializers.append(onnx.numpy_helper.from_array(value, f"{output}_value"))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{output}_value", "nothing"], [output]))
        else:
            nodes.append(helper.make_node("Identity", [f"{output}_value"], [output]))
        outputs.append(helper.make_tensor_value_info(output, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                     list(value.shape)))
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def known_answer_pose_model(path: Path, bins: np.ndarray) -> Path:
    """RTMPose's signature (input [1, 3, 256, 192], simcc_x [1, K, 384], simcc_y [1, K, 512]; K = 17 for
    body models) with the SimCC outputs peaking at `bins` (K, 2) whatever the input."""
    import onnx
    from onnx import TensorProto, helper

    count = len(bins)
    simcc_x = np.zeros((1, count, int(INPUT_WH[0] * SPLIT)), np.float32)
    simcc_y = np.zeros((1, count, int(INPUT_WH[1] * SPLIT)), np.float32)
    simcc_x[0, np.arange(count), bins[:, 0]] = PEAK_X
    simcc_y[0, np.arange(count), bins[:, 1]] = PEAK_Y
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, INPUT_WH[1], INPUT_WH[0]])]
    onnx.save(_ignoring_input("known_answer_rtmpose", {"simcc_x": simcc_x, "simcc_y": simcc_y}, inputs,
                              ["simcc_x", "simcc_y"]), path)
    return path


def batched_pose_model(path: Path, keypoints: int = KEYPOINTS, seed: int = 0) -> Path:
    """RTMPose's signature with a dynamic batch axis (input [N, 3, 256, 192] -> simcc_x [N, K, 384], simcc_y
    [N, K, 512]) whose outputs depend on the crop: 32 x 32 average pooling, then a random linear map per
    axis (fixed seed). For checking that a batch answers as its crops one by one, and as rtmlib does."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    pooled = 3 * (INPUT_WH[1] // 32) * (INPUT_WH[0] // 32)
    bins = {"simcc_x": int(INPUT_WH[0] * SPLIT), "simcc_y": int(INPUT_WH[1] * SPLIT)}
    nodes = [helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]),
             helper.make_node("Flatten", ["pooled"], ["features"])]
    initializers, outputs = [], []
    for name, count in bins.items():
        weights = (rng.standard_normal((pooled, keypoints * count)) * 0.1).astype(np.float32)
        initializers += [onnx.numpy_helper.from_array(weights, f"{name}_weights"),
                         onnx.numpy_helper.from_array(np.array([-1, keypoints, count], np.int64), f"{name}_shape")]
        nodes += [helper.make_node("MatMul", ["features", f"{name}_weights"], [f"{name}_flat"]),
                  helper.make_node("Reshape", [f"{name}_flat", f"{name}_shape"], [name])]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", keypoints, count]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, INPUT_WH[1], INPUT_WH[0]])]
    graph = helper.make_graph(nodes, "batched_rtmpose", inputs, outputs, initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def fixed_boxes_detector(path: Path, boxes_xyxy: np.ndarray, scores: np.ndarray) -> Path:
    """OpenMMLab end-to-end YOLOX's signature (input [1, 3, 640, 640]; dets [1, N, 5], labels [1, N]) that
    returns these boxes (letterboxed pixels) and scores whatever the input."""
    import onnx
    from onnx import TensorProto, helper

    dets = np.concatenate([boxes_xyxy, scores[:, None]], axis=1).astype(np.float32)[None]
    labels = np.zeros((1, len(boxes_xyxy)), np.int64)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, DETECTOR_INPUT, DETECTOR_INPUT])]
    onnx.save(_ignoring_input("fixed_boxes_yolox", {"dets": dets, "labels": labels}, inputs, ["dets", "labels"]),
              path)
    return path


def expected_keypoints(box: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Where the peaks sit in the image: the crop is the box grown by 1.25 and widened or heightened to
    the model's 3:4 aspect, centred on the box; a bin maps linearly across it."""
    centre = (box[:2] + box[2:]) / 2
    width, height = (box[2:] - box[:2]) * 1.25
    aspect = INPUT_WH[0] / INPUT_WH[1]
    width, height = (width, width / aspect) if width > height * aspect else (height * aspect, height)
    crop = np.array([width, height])
    return centre - crop / 2 + bins / SPLIT / np.array(INPUT_WH) * crop


def _randomised(model, seed: int):
    """Every parameter redrawn from N(0, 0.1) with a fixed seed: default initialisation leaves some heads
    (ZoeDepth's metric bins) predicting a constant, which would make parity checks vacuous."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


# hidden size, attention heads, layers, neck sizes, fusion size. "small" is Depth-Anything-V2-Small's
# (24.8 M parameters, what the benchmark runs); "tiny" keeps the tests fast.
DEPTH_ANYTHING_SIZES = {"tiny": (96, 4, 4, [24, 48, 96, 96], 32), "small": (384, 6, 12, [48, 96, 192, 384], 64)}


def depth_anything_checkpoint(folder: Path, metric: bool = False, seed: int = 0, size: str = "tiny") -> Path:
    """A Depth Anything (the real architecture, DINOv2 backbone) saved with save_pretrained."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    hidden, heads, layers, neck, fusion = DEPTH_ANYTHING_SIZES[size]
    backbone = Dinov2Config(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
                            intermediate_size=4 * hidden, out_indices=[layers // 4 * i for i in range(1, 5)],
                            reshape_hidden_states=False, image_size=518, patch_size=14, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=hidden, neck_hidden_sizes=neck,
                                 fusion_hidden_size=fusion, depth_estimation_type="metric" if metric else "relative",
                                 max_depth=20 if metric else 1)
    _randomised(DepthAnythingForDepthEstimation(config), seed).save_pretrained(folder)
    # The image processor as the published checkpoints configure it (their preprocessor_config.json).
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                      do_pad=False).save_pretrained(folder)
    return folder


def zoedepth_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A small ZoeDepth (BEiT backbone) saved with save_pretrained."""
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

    backbone = BeitConfig(image_size=384, hidden_size=96, num_hidden_layers=4, num_attention_heads=4,
                          intermediate_size=192, use_relative_position_bias=True, reshape_hidden_states=False,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = ZoeDepthConfig(backbone_config=backbone, neck_hidden_sizes=[24, 48, 96, 96], reassemble_hidden_size=96,
                            fusion_hidden_size=32, bottleneck_features=32, num_relative_features=8)
    _randomised(ZoeDepthForDepthEstimation(config), seed).save_pretrained(folder)
    # As the published checkpoints configure it: the class default multiple is 1/32, theirs 32 (a 640x480
    # frame becomes 512x384, as transformers' integration test expects).
    ZoeDepthImageProcessor(ensure_multiple_of=32).save_pretrained(folder)
    return folder


def mean_channel_depth_model(path: Path, height: int, width: int) -> Path:
    """Known answer: an ONNX 'depth' model whose prediction is the mean of its three input channels, at
    the input's resolution, marked metric. A frame's structure comes back where it was in the frame."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixel_values", "axis"], ["predicted_depth"], keepdims=0)],
        "mean_channel_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("predicted_depth", TensorProto.FLOAT, [1, height, width])],
        [helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.metadata_props.add(key="depth_kind", value="metric")
    onnx.save(model, str(path))
    return path


# Words of the stand-in tokenizer's vocabulary (the real one is BERT's): the tests' prompts use these.
GROUNDING_WORDS = ("person", "bus", "car", "dog", "forklift", "pallet", "red", "big", "a", "the", "tie", "stop",
                   "sign", "traffic", "light", "hand", "bag", "wheel", "window", "road", "shoe", "hat")
# The ids transformers' Grounding DINO takes as phrase delimiters ([CLS], [SEP], ".", "?"), BERT's.
_BERT_IDS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}


def grounding_tokenizer(folder: Path) -> Any:
    """A small BERT WordPiece tokenizer with BERT's special and delimiter ids (no download), saved in folder."""
    from transformers import BertTokenizerFast

    vocabulary = [f"[unused{i}]" for i in range(1040)]
    for index, token in _BERT_IDS.items():
        vocabulary[index] = token
    for index, word in enumerate(GROUNDING_WORDS):
        vocabulary[200 + 2 * index], vocabulary[201 + 2 * index] = word, f"##{word[-2:]}"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocabulary)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def grounding_dino_checkpoint(folder: Path, size: str = "small", seed: int = 0) -> Path:
    """A Grounding DINO (the real architecture: Swin backbone, BERT text encoder, deformable encoder and
    decoder) saved with save_pretrained, with its processor. "full": the published tiny checkpoint's config
    (Swin-T, BERT-base, 900 queries); "small": the same architecture shrunk to keep tests fast."""
    import torch
    from transformers import (BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    if size == "full":
        config = GroundingDinoConfig()
    else:
        config = GroundingDinoConfig(
            backbone_config=SwinConfig(embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 3, 4], window_size=7,
                                       out_indices=[2, 3, 4]),
            text_config=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            encoder_attention_heads=2, decoder_attention_heads=2, num_queries=50, encoder_n_points=2,
            decoder_n_points=2)
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(),
                           tokenizer=grounding_tokenizer(folder)).save_pretrained(folder)
    return folder


def sam_checkpoint(folder: Path, size: str = "small", seed: int = 0, version: int = 1) -> Path:
    """A Segment Anything (version 1: SamModel, ViT image encoder; 2: Sam2Model, Hiera image encoder; both with
    the prompt encoder and two-way mask decoder) saved with save_pretrained, with its processor. "full": the
    published config (facebook/sam-vit-base; facebook/sam2.1-hiera-tiny); "small": the same architecture
    shrunk to keep tests fast (the 1024 input and the 64 x 64 embedding kept)."""
    import torch
    import transformers as t

    if version == 2:
        config = t.Sam2Config() if size == "full" else t.Sam2Config(
            vision_config=t.Sam2VisionConfig(
                backbone_config=t.Sam2HieraDetConfig(hidden_size=16, blocks_per_stage=[1, 2, 2, 1],
                                                    embed_dim_per_stage=[16, 32, 64, 128],
                                                    num_attention_heads_per_stage=[1, 1, 2, 2],
                                                    global_attention_blocks=[4]),
                backbone_channel_list=[128, 64, 32, 16], fpn_hidden_size=32),
            prompt_encoder_config=t.Sam2PromptEncoderConfig(hidden_size=32),
            mask_decoder_config=t.Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2,
                                                        iou_head_hidden_dim=32))
        model, processor = t.Sam2Model(config), t.Sam2Processor(image_processor=t.Sam2ImageProcessor())
    else:
        config = t.SamConfig() if size == "full" else t.SamConfig(
            vision_config=t.SamVisionConfig(hidden_size=48, output_channels=32, num_hidden_layers=2,
                                            num_attention_heads=2, global_attn_indexes=[1], mlp_dim=96,
                                            num_pos_feats=16),
            prompt_encoder_config=t.SamPromptEncoderConfig(hidden_size=32),
            mask_decoder_config=t.SamMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2,
                                                       iou_head_hidden_dim=32))
        model, processor = t.SamModel(config), t.SamProcessor(image_processor=t.SamImageProcessor())
    _randomised(model, seed)
    # Layer norms as initialised (scale 1, shift 0) and the prompt encoder's random Fourier features N(0, 1), as
    # SAM initialises them: scaled down, every prompt gets nearly the same mask, and parity checks could not
    # tell prompts apart.
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.fill_(1.0 if name.endswith("weight") else 0.0)
        features = model.shared_image_embedding.positional_embedding
        features.copy_(torch.randn(features.shape, generator=generator))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# Florence-2's extra tokens: the location bins, and the markers its answers use.
FLORENCE2_TOKENS = [f"<loc_{i}>" for i in range(1000)] + ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>",
                                                           "<sep>", "<ground>", "<obj>"]
FLORENCE2_WORDS = ["What does the image describe?", "Describe in detail what is shown in the image.",
                   "Describe with a paragraph what is shown in the image.", "What is the text in the image?",
                   "What is the text in the image, with regions?",
                   "Locate the objects with category name in the image.",
                   "Locate the objects in the image, with their descriptions.",
                   "Locate the region proposals in the image.", "Locate the phrases in the caption: a person next to a bus.",
                   "A man in a suit and tie stands on the street; two people wait at the bus stop, a car passes."]


def florence2_tokenizer(vocabulary: int = 400) -> Any:
    """A byte-level BPE tokenizer shaped like Florence-2's (BART's special tokens and ids, the <loc_N> bins, the
    task markers and the <image> token), trained on a few sentences (no download; deterministic)."""
    import transformers as t
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(FLORENCE2_WORDS * 3, trainers.BpeTrainer(
        vocab_size=vocabulary, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.add_special_tokens(["<mask>"])
    tokenizer.add_tokens(FLORENCE2_TOKENS)
    tokenizer.add_special_tokens(["<image>"])
    return t.BartTokenizer(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                           unk_token="<unk>", mask_token="<mask>", extra_special_tokens={"image_token": "<image>"})


def florence2_checkpoint(folder: Path, size: str = "small", seed: int = 0) -> Path:
    """A Florence2ForConditionalGeneration (DaViT vision tower, BART encoder-decoder) with its processor, saved
    with save_pretrained. "base": Florence-2-base's architecture (768 x 768 images, 577 image tokens, BART-base
    text model) with the stand-in tokenizer's vocabulary; "small": the same shrunk (128 x 128 images) to keep
    tests fast. Generation config as Florence-2's: no_repeat_ngram_size 3, the end token forced last."""
    import torch
    import transformers as t

    tokenizer = florence2_tokenizer()
    side = 768 if size == "base" else 128
    images = t.CLIPImageProcessor(size={"height": side, "width": side}, crop_size={"height": side, "width": side},
                                  do_center_crop=False, resample=3, image_mean=[0.485, 0.456, 0.406],
                                  image_std=[0.229, 0.224, 0.225], image_seq_length=(side // 32) ** 2 + 1)
    parsing = {name: {} for name in ("ocr", "pure_text", "description_with_bboxes", "description_with_polygons",
                                     "polygons", "bboxes", "description_with_bboxes_or_polygons")}
    parsing["phrase_grounding"] = {"banned_grounding_tokens": ["the image"]}
    processor = t.Florence2Processor(image_processor=images, tokenizer=tokenizer, post_processor_config=parsing)
    text = {"vocab_size": len(tokenizer), "max_position_embeddings": 1024, "forced_eos_token_id": 2}
    if size == "base":
        text_config = t.BartConfig(**text, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                                   decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)  # BART-base
        vision_config = t.Florence2VisionConfig(projection_dim=768)
    else:
        text_config = t.BartConfig(**text, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                                   decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64)
        vision_config = t.Florence2VisionConfig(embed_dim=[16, 32, 64, 128], num_heads=[1, 2, 4, 8],
                                                num_groups=[1, 2, 4, 8], depths=[1, 1, 1, 1], projection_dim=32,
                                                window_size=2, max_position_embeddings=16)
    config = t.Florence2Config(text_config=text_config, vision_config=vision_config,
                               image_token_id=tokenizer.image_token_id)
    torch.manual_seed(seed)
    model = t.Florence2ForConditionalGeneration(config).eval()
    if size == "base":
        # The model's own initialisation (N(0, 0.02)): N(0, 0.1) makes the 768-wide config chaotic (PyTorch's
        # float32 and float64 encoders differ by 0.4). So initialised, the decoder repeats its input token, and
        # its first is the end token: a minimum length makes it say something.
        model.generation_config.min_length = 12
    else:
        _randomised(model, seed)  # N(0, 0.1): answers with words and locations (the small config is stable)
    with torch.no_grad():  # layer norms as initialised: scaled down, every token would score nearly the same
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.fill_(1.0 if name.endswith("weight") else 0.0)
    model.generation_config.no_repeat_ngram_size = 3
    model.generation_config.num_beams = 3
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
