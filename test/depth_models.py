"""Depth checkpoints built from small transformers configs with fixed seeds (no weights can be downloaded
here; speed and numerics do not depend on the weights' values), saved as users' folders are, and a
known-answer ONNX depth model for alignment checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _randomised(model, seed: int):
    """Every parameter redrawn from N(0, 0.1) with a fixed seed: default initialisation leaves some heads
    (ZoeDepth's metric bins) predicting a constant, which would make parity checks vacuous."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def depth_anything_checkpoint(folder: Path, metric: bool = False, seed: int = 0) -> Path:
    """A small Depth Anything (DINOv2-small backbone, the real architecture) saved with save_pretrained."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=96, num_attention_heads=4, num_hidden_layers=4, intermediate_size=192,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False, image_size=518, patch_size=14,
                            apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=96, neck_hidden_sizes=[24, 48, 96, 96],
                                 fusion_hidden_size=32, depth_estimation_type="metric" if metric else "relative",
                                 max_depth=20 if metric else 1)
    _randomised(DepthAnythingForDepthEstimation(config), seed).save_pretrained(folder)
    return folder


def zoedepth_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A small ZoeDepth (BEiT backbone) saved with save_pretrained."""
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation

    backbone = BeitConfig(image_size=384, hidden_size=96, num_hidden_layers=4, num_attention_heads=4,
                          intermediate_size=192, use_relative_position_bias=True, reshape_hidden_states=False,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = ZoeDepthConfig(backbone_config=backbone, neck_hidden_sizes=[24, 48, 96, 96], reassemble_hidden_size=96,
                            fusion_hidden_size=32, bottleneck_features=32, num_relative_features=8)
    _randomised(ZoeDepthForDepthEstimation(config), seed).save_pretrained(folder)
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
