"""The course's operations: cross-correlation in its teaching form and vectorized, and pooling.

Every op returns its output on the input's device and in the input's dtype, and is built
from differentiable torch operations, so autograd flows through it.

Shapes follow the chapters' names: X is the input, K the kernel, Y the output;
H' = (H + 2*ph - kh) // sh + 1 and W' = (W + 2*pw - kw) // sw + 1
(conv2d with a dilation d: H' = (H + 2*ph - dh*(kh-1) - 1) // sh + 1).
"""
from __future__ import annotations

import torch

from . import _engine
from ._checks import IntPair, check_fits, check_same, check_tensor, int_at_least, pair


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Single-channel 2-D cross-correlation, written as the explicit loop chapter 2 teaches.

    Inputs:
    - X: input of shape (H, W)
    - K: kernel of shape (kh, kw), same dtype and device as X

    Returns: Y of shape (H - kh + 1, W - kw + 1), where
    Y[i, j] = sum over a, b of X[i + a, j + b] * K[a, b].
    """
    check_tensor("X", X, (2,), "(H, W)")
    check_tensor("K", K, (2,), "(kh, kw)")
    check_same("X", X, "K", K)
    check_fits(tuple(K.shape), tuple(X.shape), (0, 0), "kernel K")
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))  # input's device and dtype
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i : i + h, j : j + w] * K).sum()
    return Y


def convolve2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """True 2-D convolution: cross-correlation with the kernel flipped on both axes.

    Inputs: X of shape (H, W), K of shape (kh, kw).
    Returns: (H - kh + 1, W - kw + 1), where Y[i, j] = sum of X[i + a, j + b] * K[kh-1-a, kw-1-b].
    """
    check_tensor("K", K, (2,), "(kh, kw)")
    return corr2d(X, torch.flip(K, dims=(0, 1)))


def corr2d_multi_in(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Cross-correlation over several input channels: one kernel slice per channel, summed.

    Inputs:
    - X: (C, H, W)
    - K: (C, kh, kw)

    Returns: (H - kh + 1, W - kw + 1)
    """
    check_tensor("X", X, (3,), "(C, H, W)")
    check_tensor("K", K, (3,), "(C, kh, kw)")
    if X.shape[0] == 0:
        raise ValueError("X must have at least one channel: shape (C, H, W) with C >= 1, got C = 0")
    if X.shape[0] != K.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} channels but K has {K.shape[0]}: K must have shape (C, kh, kw) with C = {X.shape[0]}"
        )
    return sum(corr2d(x, k) for x, k in zip(X, K))


def corr2d_multi_in_out(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Cross-correlation with several input and output channels.

    Inputs:
    - X: (C, H, W)
    - K: (C_out, C, kh, kw)

    Returns: (C_out, H - kh + 1, W - kw + 1); output channel o is corr2d_multi_in(X, K[o]).
    """
    check_tensor("X", X, (3,), "(C, H, W)")
    check_tensor("K", K, (4,), "(C_out, C, kh, kw)")
    if X.shape[0] != K.shape[1]:
        raise ValueError(
            f"X has {X.shape[0]} channels but K has {K.shape[1]} input channels: "
            f"K must have shape (C_out, {X.shape[0]}, kh, kw)"
        )
    return torch.stack([corr2d_multi_in(X, k) for k in K], dim=0)


def corr2d_multi_in_out_1x1(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution as one matrix product: a fully-connected layer applied at every pixel.

    Inputs:
    - X: (C, H, W)
    - K: (C_out, C, 1, 1)

    Returns: (C_out, H, W)
    """
    check_tensor("X", X, (3,), "(C, H, W)")
    check_tensor("K", K, (4,), "(C_out, C, 1, 1)")
    check_same("X", X, "K", K)
    c_i, h, w = X.shape
    c_o = K.shape[0]
    if tuple(K.shape[1:]) != (c_i, 1, 1):
        raise ValueError(f"K must have shape (C_out, {c_i}, 1, 1) for X with {c_i} channels, got {tuple(K.shape)}")
    Y = K.reshape(c_o, c_i) @ X.reshape(c_i, h * w)  # (C_out, H*W)
    return Y.reshape(c_o, h, w)


def conv2d(
    X: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Vectorized 2-D convolution layer (cross-correlation), as torch.nn.functional.conv2d.

    The windows are a strided view of the padded input (im2col without a Python loop over
    pixels); copied a few images at a time, they meet the flattened kernels in batched
    matrix products. The backward pass is a matrix product followed by col2im for the input
    and another such cross-correlation for the weight (cnnlib._engine).

    Inputs:
    - X: (N, C, H, W) or (C, H, W)
    - weight: (F, C // groups, kh, kw)
    - bias: (F,) or None
    - stride: int or (sh, sw), at least 1
    - padding: int or (ph, pw), zeros added on each side
    - dilation: int or (dh, dw), at least 1: the kernel's taps sit d pixels apart, so a
      (kh, kw) kernel spans dh*(kh-1)+1 rows and dw*(kw-1)+1 columns
    - groups: a positive int G that divides C and F. The channels are split into G groups;
      output channel f sees only the C/G input channels of group f // (F/G).
      groups = C = F is a depthwise convolution: one (kh, kw) kernel per channel.

    Returns: (N, F, H', W') or (F, H', W'), where
    H' = (H + 2*ph - dh*(kh-1) - 1) // sh + 1 and W' = (W + 2*pw - dw*(kw-1) - 1) // sw + 1
    (with dilation 1: (H + 2*ph - kh) // sh + 1).
    """
    check_tensor("X", X, (3, 4), "(N, C, H, W) or (C, H, W)")
    check_tensor("weight", weight, (4,), "(F, C, kh, kw)")
    check_same("X", X, "weight", weight)
    sh, sw = pair("stride", stride, 1)
    ph, pw = pair("padding", padding, 0)
    dh, dw = pair("dilation", dilation, 1)
    G = int_at_least("groups", groups, 1)
    unbatched = X.dim() == 3
    if unbatched:
        X = X.unsqueeze(0)
    N, C, H, W = X.shape
    F_out, C_w, kh, kw = weight.shape
    if C % G or F_out % G:
        raise ValueError(
            f"groups must divide the input channels and the output channels, got groups={G} "
            f"for X with {C} channels and weight with {F_out} output channels"
        )
    if C_w * G != C:
        expected = f"(F, {C}, kh, kw)" if G == 1 else f"(F, {C} // groups = {C // G}, kh, kw)"
        raise ValueError(f"X has {C} channels but weight expects {C_w * G}: weight must have shape {expected}")
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    check_fits(span, (H, W), (ph, pw), "kernel" if (dh, dw) == (1, 1) else f"dilated kernel (dilation {(dh, dw)})")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (F_out,):
            got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
            raise ValueError(f"bias must be a tensor of shape ({F_out},), got {got}")
        check_same("X", X, "bias", bias)

    Y = _engine.conv2d(X, weight, bias, (sh, sw), (ph, pw), (dh, dw), G)  # (N, F, H', W')
    return Y[0] if unbatched else Y


def pool2d(
    X: torch.Tensor,
    pool_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    mode: str = "max",
) -> torch.Tensor:
    """Vectorized max or average pooling, as F.max_pool2d / F.avg_pool2d with their default flags.

    Each channel is pooled on its own, so the output has as many channels as the input.
    Average pooling counts the zero padding in its windows (count_include_pad=True);
    max pooling pads with -inf, so padding is never the maximum.

    Inputs:
    - X: (H, W), (C, H, W) or (N, C, H, W)
    - pool_size: int or (kh, kw)
    - stride: int or (sh, sw); defaults to pool_size
    - padding: int or (ph, pw), at most half the window on each axis (as torch requires)
    - mode: 'max' or 'avg'

    Returns: the input's leading dimensions followed by (H', W'), where
    H' = (H + 2*ph - kh) // sh + 1 and W' = (W + 2*pw - kw) // sw + 1.
    """
    check_tensor("X", X, (2, 3, 4), "(H, W), (C, H, W) or (N, C, H, W)")
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    kh, kw = pair("pool_size", pool_size, 1)
    sh, sw = pair("stride", (kh, kw) if stride is None else stride, 1)
    ph, pw = pair("padding", padding, 0)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"padding must be at most half of pool_size on each axis, got padding {(ph, pw)} "
                         f"for pool_size {(kh, kw)}")
    lead = X.shape[:-2]
    H, W = X.shape[-2:]
    check_fits((kh, kw), (H, W), (ph, pw), "pool_size")
    X4 = X.reshape(-1, 1, H, W)  # (N*C, 1, H, W): every channel pooled alone
    Y = _engine.pool2d(X4, (kh, kw), (sh, sw), (ph, pw), mode)  # (N*C, 1, H', W')
    return Y.reshape(*lead, Y.shape[-2], Y.shape[-1])


def global_avg_pool2d(X: torch.Tensor) -> torch.Tensor:
    """Average each channel over all of its pixels, keeping the spatial dimensions as 1x1.

    Inputs: X of shape (N, C, H, W) or (C, H, W).
    Returns: (N, C, 1, 1) or (C, 1, 1), as nn.AdaptiveAvgPool2d(1).
    """
    check_tensor("X", X, (3, 4), "(N, C, H, W) or (C, H, W)")
    return X.mean(dim=(-2, -1), keepdim=True)


def pad2d(X: torch.Tensor, padding: IntPair) -> torch.Tensor:
    """Zero padding of the last two dimensions: ph rows above and below, pw columns left and right.

    Inputs:
    - X: (..., H, W), at least two dimensions
    - padding: int p for (p, p), or a pair (ph, pw); each at least 0

    Returns: (..., H + 2*ph, W + 2*pw), with X in the middle and zeros around it.
    """
    check_tensor("X", X, tuple(range(2, 9)), "(..., H, W)")
    ph, pw = pair("padding", padding, 0)
    H, W = X.shape[-2:]
    Y = X.new_zeros((*X.shape[:-2], H + 2 * ph, W + 2 * pw))  # input's device and dtype
    Y[..., ph : ph + H, pw : pw + W] = X
    return Y


def corr2d_padded(X: torch.Tensor, K: torch.Tensor, padding: IntPair = 0, stride: IntPair = 1) -> torch.Tensor:
    """Single-channel cross-correlation with zero padding and a stride: conv2d on one channel.

    Inputs:
    - X: (H, W)
    - K: (kh, kw), same dtype and device as X
    - padding: int or (ph, pw), zeros added on each side
    - stride: int or (sh, sw), at least 1

    Returns: (H', W') with H' = (H + 2*ph - kh) // sh + 1 and W' = (W + 2*pw - kw) // sw + 1.
    """
    check_tensor("X", X, (2,), "(H, W)")
    check_tensor("K", K, (2,), "(kh, kw)")
    return conv2d(X[None, None], K[None, None], stride=stride, padding=padding)[0, 0]


def conv_as_matrix(K: torch.Tensor, input_shape: IntPair) -> torch.Tensor:
    """The dense matrix of corr2d(., K) on (H, W) inputs: a convolution is a sparse, weight-shared FC layer.

    Inputs:
    - K: (kh, kw)
    - input_shape: (H, W), or an int for a square input

    Returns: W of shape ((H-kh+1)*(W-kw+1), H*W), on K's device and dtype, with
    W @ X.flatten() == corr2d(X, K).flatten(). Row i*W' + j holds K[a, b] in column (i+a)*W + (j+b).
    """
    check_tensor("K", K, (2,), "(kh, kw)")
    H, W = pair("input_shape", input_shape, 1)
    kh, kw = K.shape
    check_fits((kh, kw), (H, W), (0, 0), "kernel K")
    Ho, Wo = H - kh + 1, W - kw + 1
    M = K.new_zeros((Ho, Wo, H, W))  # M[i, j] is the input's weight map for output pixel (i, j)
    i = torch.arange(Ho, device=K.device)[:, None]  # (H', 1)
    j = torch.arange(Wo, device=K.device)[None, :]  # (1, W')
    for a in range(kh):
        for b in range(kw):
            M[i, j, i + a, j + b] = K[a, b]
    return M.reshape(Ho * Wo, H * W)  # (H'*W', H*W)
