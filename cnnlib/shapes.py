"""Shape and size arithmetic: output sizes, receptive fields and parameter counts."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from ._checks import IntPair, pair


def _size_pair(name: str, value: object, minimum: int) -> tuple[tuple[int, int], bool]:
    """(pair, was_given_as_pair)."""
    return pair(name, value, minimum), not isinstance(value, int)


def conv_output_shape(
    input_size: IntPair, kernel_size: IntPair, padding: IntPair = 0, stride: IntPair = 1, dilation: IntPair = 1
) -> int | tuple[int, int]:
    """Output size of a convolution or pooling window sliding over an input.

    Inputs (each an int, or a pair for (height, width)):
    - input_size: n, the input's size
    - kernel_size: k, the window's size
    - padding: p, rows or columns of padding added on *each* side
    - stride: s, the step between windows
    - dilation: d, the step between the kernel's taps; the window then spans d*(k-1) + 1 pixels

    Returns: (n + 2*p - d*(k-1) - 1) // s + 1 per axis, which is (n + 2*p - k) // s + 1 for d = 1;
    an int when every argument is an int, else a pair.

    The course notes write the same formula with the *total* padding P = 2*p over both sides:
    floor((n - k + P + s) / s), which equals (n - k + P) // s + 1.
    """
    n, n_pair = _size_pair("input_size", input_size, 1)
    k, k_pair = _size_pair("kernel_size", kernel_size, 1)
    p, p_pair = _size_pair("padding", padding, 0)
    s, s_pair = _size_pair("stride", stride, 1)
    d, d_pair = _size_pair("dilation", dilation, 1)
    out = []
    for axis in range(2):
        span = d[axis] * (k[axis] - 1) + 1
        if span > n[axis] + 2 * p[axis]:
            what = f"kernel_size {k[axis]}" + (f" with dilation {d[axis]} spans {span}, which" if d[axis] > 1 else "")
            raise ValueError(
                f"{what} is larger than the padded input {n[axis]} + 2*{p[axis]} "
                f"= {n[axis] + 2 * p[axis]} on axis {axis}"
            )
        out.append((n[axis] + 2 * p[axis] - span) // s[axis] + 1)
    if n_pair or k_pair or p_pair or s_pair or d_pair:
        return out[0], out[1]
    return out[0]


def receptive_field(layers: Iterable[Sequence[int]]) -> int:
    """Size of the input region that one output unit sees, after a stack of layers.

    Inputs: layers, a sequence of (kernel, stride) pairs or (kernel, stride, dilation) triples,
    first layer first.
    Returns: r, where r starts at 1 and each layer adds dilation * (kernel - 1) times the jump,
    the product of the strides of the layers before it.

    Example: two 3x3 stride-1 convolutions see 5x5; with a stride-2 layer first, 3 + 2*2 = 7;
    3x3 layers with dilations 1, 2, 4 see 1 + 2 + 4 + 8 = 15.
    """
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be a sequence of (kernel, stride) pairs, got {type(layers).__name__}")
    r, jump = 1, 1
    for i, layer in enumerate(layers):
        if (
            not isinstance(layer, (tuple, list))
            or len(layer) not in (2, 3)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in layer)
        ):
            raise TypeError(
                f"layers[{i}] must be a (kernel, stride) pair of ints or a (kernel, stride, dilation) triple, "
                f"got {layer!r}"
            )
        k, s, d = (*layer, 1) if len(layer) == 2 else layer
        if k < 1 or s < 1 or d < 1:
            raise ValueError(
                f"layers[{i}] must have kernel >= 1 and stride >= 1 (and dilation >= 1), got {tuple(layer)}"
            )
        r += d * (k - 1) * jump
        jump *= s
    return r


def _count(name: str, value: object) -> int:
    """An int, or the product of a shape, as a positive count."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a shape tuple, got {value!r}")
    if isinstance(value, int):
        dims = (value,)
    elif isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        dims = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a shape tuple of ints, got {value!r}")
    if not dims or min(dims) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return math.prod(dims)


def fc_param_count(in_features: int | Sequence[int], out_features: int, bias: bool = True) -> int:
    """Parameters of a fully-connected layer: in_features * out_features weights, plus out_features biases.

    in_features may be an image shape such as (300, 300); it is flattened.
    A 300x300 image into 10,000 hidden units: 900,010,000, about a billion.
    """
    n_in = _count("in_features", in_features)
    n_out = _count("out_features", out_features)
    return n_in * n_out + (n_out if bias else 0)


def _groups(in_channels: int, out_channels: int, groups: object) -> int:
    """A positive int that divides both channel counts."""
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"groups must be a positive int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups must divide in_channels and out_channels, got groups={groups} for "
            f"in_channels={in_channels} and out_channels={out_channels}"
        )
    return groups


def conv_param_count(
    in_channels: int, out_channels: int, kernel_size: IntPair, bias: bool = True, groups: int = 1
) -> int:
    """Parameters of a convolution layer: C_out * (C_in / groups) * kh * kw weights, plus C_out biases.

    It does not depend on the image size: the kernel is shared across every position.
    With groups=g, the channels are split into g groups and each output channel sees only the
    C_in / g input channels of its group, as in nn.Conv2d(..., groups=g); groups=C_in=C_out is a
    depthwise convolution (one kh x kw kernel per channel). g must divide C_in and C_out.
    """
    c_in = _count("in_channels", in_channels)
    c_out = _count("out_channels", out_channels)
    kh, kw = pair("kernel_size", kernel_size, 1)
    g = _groups(c_in, c_out, groups)
    return c_out * (c_in // g) * kh * kw + (c_out if bias else 0)


def conv_macs(
    in_channels: int, out_channels: int, kernel_size: IntPair, output_size: IntPair, groups: int = 1
) -> int:
    """Multiply-accumulate operations of one convolution layer on one image (bias additions not counted).

    Each of the C_out x oh x ow outputs is a sum of (C_in / groups) * kh * kw products, so the count is
    C_out * oh * ow * (C_in / groups) * kh * kw: the layer's weight count times the output's area.

    Inputs: channel counts, kernel_size (k or (kh, kw)), output_size (the output's size n or (oh, ow),
    see conv_output_shape) and groups (see conv_param_count). A batch of N images costs N times as much.
    """
    oh, ow = pair("output_size", output_size, 1)
    return conv_param_count(in_channels, out_channels, kernel_size, bias=False, groups=groups) * oh * ow
