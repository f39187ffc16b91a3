"""Layers as torch.nn.Modules: the chapter's teaching layer and drop-in, from-scratch
versions of nn.Conv2d, nn.MaxPool2d and nn.AvgPool2d."""
from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import IntPair, int_at_least, pair
from .ops import conv2d, corr2d, pool2d


class Conv2D(nn.Module):
    """The teaching layer of chapter 2: one (kh, kw) kernel and a scalar bias, on one channel.

    Inputs: X of shape (H, W).
    Returns: corr2d(X, weight) + bias, of shape (H - kh + 1, W - kw + 1).
    """

    def __init__(self, kernel_size: IntPair) -> None:
        super().__init__()
        kh, kw = pair("kernel_size", kernel_size, 1)
        self.weight = nn.Parameter(torch.rand(kh, kw))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return corr2d(X, self.weight) + self.bias


class Conv2d(nn.Module):
    """A convolution layer built on cnnlib.conv2d, with nn.Conv2d's arguments and initialisation.

    Inputs: X of shape (N, C_in, H, W) or (C_in, H, W).
    Returns: (N, C_out, H', W') where H' = (H + 2*ph - dh*(kh-1) - 1) // sh + 1.
    The weight has shape (C_out, C_in // groups, kh, kw); see cnnlib.conv2d for dilation and groups.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        bias: bool = True,
        dilation: IntPair = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels = int_at_least("in_channels", in_channels, 1)
        self.out_channels = int_at_least("out_channels", out_channels, 1)
        self.kernel_size = pair("kernel_size", kernel_size, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        self.dilation = pair("dilation", dilation, 1)
        self.groups = int_at_least("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups must divide in_channels and out_channels, got groups={groups} for "
                f"in_channels={in_channels} and out_channels={out_channels}"
            )
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The same default as nn.Conv2d: uniform in +-1/sqrt(fan_in) for both weight and bias.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return conv2d(
            X, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, groups=self.groups,
        )

    def extra_repr(self) -> str:
        extra = (f", dilation={self.dilation}" if self.dilation != (1, 1) else "") + (
            f", groups={self.groups}" if self.groups != 1 else ""
        )  # listed only when not the default, as nn.Conv2d does
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}{extra}, bias={self.bias is not None}"
        )


class _Pool2d(nn.Module):
    mode = "max"

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> None:
        super().__init__()
        self.kernel_size = pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return pool2d(X, self.kernel_size, self.stride, self.padding, mode=self.mode)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling built on cnnlib.pool2d; the stride defaults to the window, as in nn.MaxPool2d."""

    mode = "max"


class AvgPool2d(_Pool2d):
    """Average pooling built on cnnlib.pool2d (zero padding counted), as nn.AvgPool2d."""

    mode = "avg"
