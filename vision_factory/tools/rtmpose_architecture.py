"""RTMPose's network rebuilt in PyTorch from mmpose 1.3's definition (a CSPNeXt backbone, an RTMCC head with one
gated attention unit), with random weights (fixed seed), for benchmarking the pose pipeline with the compute of
a real RTMPose: no RTMPose weights can be downloaded here and mmpose does not install (its detection imports
need mmcv's compiled ops). Speed does not depend on the weights' values; keypoints from it mean nothing.

Layer sizes are mmpose's body configs at 256 x 192 input, 17 keypoints, SimCC split ratio 2: CSPNeXt P5 with
channel attention, the head's 7 x 7 final convolution, a 256-wide token MLP and one gated attention unit (no
relative position bias, no rotary encoding), as rtmpose-{t,s,m,l}_8xb256-420e_body8-256x192 configure them.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Per size: CSPNeXt's depth and width multipliers (rtmpose-t/s/m/l).
SIZES = {"t": (0.167, 0.375), "s": (0.33, 0.5), "m": (0.67, 0.75), "l": (1.0, 1.0)}
# CSPNeXt P5 stages: in and out channels, blocks, identity shortcuts in the blocks, spatial pyramid pooling.
STAGES = ((64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False),
          (512, 1024, 3, False, True))
INPUT_HW, KEYPOINTS, SPLIT_RATIO, TOKEN_DIMS = (256, 192), 17, 2.0, 256


def conv(inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """mmcv's ConvModule as CSPNeXt configures it: convolution, batch norm (eps 1e-3), SiLU."""
    return nn.Sequential(nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(outputs, eps=1e-3, momentum=0.03), nn.SiLU())


class CspNextBlock(nn.Module):
    """A 3 x 3 convolution, then a depthwise-separable 5 x 5 one; the input added when `identity`."""

    def __init__(self, channels: int, identity: bool):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), conv(channels, channels, 5, groups=channels),
                                  conv(channels, channels, 1))
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.identity else self.body(x)


class CspLayer(nn.Module):
    """Half the channels through the blocks, half around them, joined, weighted by channel attention."""

    def __init__(self, channels: int, blocks: int, identity: bool):
        super().__init__()
        half = channels // 2
        self.main = nn.Sequential(conv(channels, half, 1), *(CspNextBlock(half, identity) for _ in range(blocks)))
        self.short = conv(channels, half, 1)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * half, 2 * half, 1), nn.Hardsigmoid())
        self.final = conv(2 * half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat((self.main(x), self.short(x)), dim=1)
        return self.final(joined * self.attention(joined))


class SpatialPyramidPooling(nn.Module):
    """Half the channels, max-pooled at 5, 9 and 13 beside themselves, back to all the channels."""

    def __init__(self, channels: int, kernels: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        half = channels // 2
        self.reduce = conv(channels, half, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.expand = conv(half * (len(kernels) + 1), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return self.expand(torch.cat([x, *(pool(x) for pool in self.pools)], dim=1))


def cspnext(deepen: float, widen: float) -> nn.Sequential:
    """CSPNeXt P5 to its last stage (stride 32)."""
    stem = int(STAGES[0][0] * widen)
    layers: list[nn.Module] = [conv(3, stem // 2, 3, 2), conv(stem // 2, stem // 2, 3), conv(stem // 2, stem, 3)]
    for inputs, outputs, blocks, identity, pyramid in STAGES:
        inputs, outputs = int(inputs * widen), int(outputs * widen)
        layers.append(conv(inputs, outputs, 3, 2))
        if pyramid:
            layers.append(SpatialPyramidPooling(outputs))
        layers.append(CspLayer(outputs, max(round(blocks * deepen), 1), identity))
    return nn.Sequential(*layers)


class ScaleNorm(nn.Module):
    def __init__(self, dims: int, eps: float = 1e-5):
        super().__init__()
        self.scale, self.eps, self.gain = dims ** -0.5, eps, nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (torch.norm(x, dim=-1, keepdim=True) * self.scale).clamp(min=self.eps) * self.gain


class GatedAttentionUnit(nn.Module):
    """RTMCC's self-attention over the keypoint tokens (squared-ReLU attention, gated), with a scaled shortcut."""

    def __init__(self, dims: int, expansion: int = 2, s: int = 128):
        super().__init__()
        self.e, self.s = dims * expansion, s
        self.norm = ScaleNorm(dims)
        self.uv = nn.Linear(dims, 2 * self.e + s, bias=False)
        self.gamma, self.beta = nn.Parameter(torch.rand(2, s)), nn.Parameter(torch.rand(2, s))
        self.out = nn.Linear(self.e, dims, bias=False)
        self.shortcut_scale = nn.Parameter(torch.ones(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v, base = torch.split(F.silu(self.uv(self.norm(x))), [self.e, self.e, self.s], dim=2)
        q, k = torch.unbind(base.unsqueeze(2) * self.gamma + self.beta, dim=2)
        kernel = torch.square(F.relu(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(self.s)))
        return x * self.shortcut_scale + self.out(u * torch.bmm(kernel, v))


class RtmPose(nn.Module):
    """(N, 3, 256, 192) crops -> SimCC x (N, 17, 384) and y (N, 17, 512)."""

    def __init__(self, size: str = "m"):
        super().__init__()
        deepen, widen = SIZES[size]
        channels = int(STAGES[-1][1] * widen)
        height, width = INPUT_HW
        self.backbone = cspnext(deepen, widen)
        self.final_layer = nn.Conv2d(channels, KEYPOINTS, 7, padding=3)
        flattened = (height // 32) * (width // 32)
        self.mlp = nn.Sequential(ScaleNorm(flattened), nn.Linear(flattened, TOKEN_DIMS, bias=False))
        self.gau = GatedAttentionUnit(TOKEN_DIMS)
        self.cls_x = nn.Linear(TOKEN_DIMS, int(width * SPLIT_RATIO), bias=False)
        self.cls_y = nn.Linear(TOKEN_DIMS, int(height * SPLIT_RATIO), bias=False)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.gau(self.mlp(torch.flatten(self.final_layer(self.backbone(crops)), 2)))
        return self.cls_x(tokens), self.cls_y(tokens)


def export_rtmpose(path: Path, size: str = "m", seed: int = 0) -> Path:
    """RTMPose-`size` with random weights as ONNX with rtmlib's signature and a dynamic batch axis: `input`
    [N, 3, 256, 192] -> `simcc_x` [N, 17, 384], `simcc_y` [N, 17, 512]."""
    torch.manual_seed(seed)
    model = RtmPose(size).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, *INPUT_HW),), str(path), input_names=["input"],
                          output_names=["simcc_x", "simcc_y"], opset_version=17, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in ("input", "simcc_x", "simcc_y")})
    return path
