"""The course's operations: cross-correlation in its teaching form and vectorized, and pooling.

Every op returns its output on the input's device and in the input's dtype, and is built
from differentiable torch operations, so autograd flows through it.

Shapes follow the chapters' names: X is the input, K the kernel, Y the output;
H' = (H + 2*ph - kh) // sh + 1 and W' = (W + 2*pw - kw) // sw + 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import IntPair, check_fits, check_same, check_tensor, pair


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


def _windows(X: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """A strided view of every (kh, kw) window: (N, C, H, W) -> (N, C, H', W', kh, kw). No copy."""
    return X.unfold(2, kernel[0], stride[0]).unfold(3, kernel[1], stride[1])


# How many bytes of im2col columns conv2d builds at a time (pool2d: of input). On the CPU a
# chunk small enough to stay in the cores' caches (this much per thread) is read back by the
# matmul at cache speed instead of from memory; a GPU wants the whole batch in one matmul.
_CPU_COLS_BYTES = 1 << 20
_GPU_COLS_BYTES = 1 << 28


def _chunk(X: torch.Tensor, count: int, bytes_each: int) -> int:
    """How many of `count` items of `bytes_each` bytes make one chunk of work on X's device."""
    budget = _GPU_COLS_BYTES if X.is_cuda else _CPU_COLS_BYTES * torch.get_num_threads()  # per core
    return max(1, min(count, budget // max(1, bytes_each)))


def _corr_flat(X: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """Stride-1 cross-correlation with columns that are whole stretches of the flattened image.

    Pad each (Hp, Wp) plane and lay the planes end to end. Kernel offset (a, b) then sees the
    stretch of Ho*Wp numbers starting at a*Wp + b: every output row plus Wp - Wo extra numbers
    that run past the row's end. Copying such long stretches is far cheaper than copying
    rows of Wo numbers one by one; the product computes the extra columns too, and they are
    dropped at the end. No autograd here.

    Inputs: X (N, C, H, W), weight (F, C, kh, kw), padding (ph, pw).
    Returns: Y of shape (N, F, H', W'), contiguous.
    """
    N, C, H, W = X.shape
    F_out, _, kh, kw = weight.shape
    ph, pw = padding
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, Wo = Hp - kh + 1, Wp - kw + 1
    P, Lw, K = Hp * Wp, Ho * Wp, C * kh * kw
    flat = X.new_zeros(N * C * P + kw - 1)  # the last stretch runs kw - 1 past the last plane
    flat[: N * C * P].view(N, C, Hp, Wp)[:, :, ph : ph + H, pw : pw + W] = X
    view = flat.as_strided((N, C, kh, kw, Lw), (C * P, P, Wp, 1, 1))  # (N, C, kh, kw, H'*Wp), a view
    W2 = weight.reshape(F_out, K)  # (F, C*kh*kw)
    B = _chunk(X, N, K * Lw * X.element_size())
    cols = X.new_empty((B, K, Lw))  # reused by every chunk
    W2e = W2.expand(B, F_out, K)
    Yw = X.new_empty((B, F_out, Ho, Wp))
    Y = X.new_empty((N, F_out, Ho, Wo))
    for start in range(0, N, B):  # few ops per chunk: each costs microseconds
        m = min(B, N - start)
        c, w, y = (cols, W2e, Yw) if m == B else (cols[:m], W2e[:m], Yw[:m])
        c.view(m, C, kh, kw, Lw).copy_(view[start : start + m])
        torch.bmm(w, c, out=y.view(m, F_out, Lw))  # (B, F, H'*Wp)
        Y[start : start + m] = y[..., :Wo]  # drop the extra columns while they are in cache
    return Y


def _corr_padded(Xp: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Cross-correlation of an already padded input by im2col and matrix products, in chunks.

    No autograd here: _Conv2dFunction calls it and supplies the backward.

    Inputs:
    - Xp: (N, C, Hp, Wp), any strides
    - weight: (F, C, kh, kw), any strides

    Returns: Y of shape (N, F, H', W'), contiguous, H' = (Hp - kh) // sh + 1.

    Two ways to cut the work into cache-sized chunks of columns:
    - output rows at least as wide as the kernel (the usual layer): a few images at a time,
      one (F, C*kh*kw) x (C*kh*kw, H'*W') product per image;
    - kernels wider than the output (the weight gradient, where the kernel is dL/dY): all
      images at once, a few channels at a time, summing (N*H'*W', c*kh*kw) x (c*kh*kw, F) products.
    Either way the copy runs along the longer contiguous stretch of the input.
    """
    N, C, _, _ = Xp.shape
    F_out, _, kh, kw = weight.shape
    win = _windows(Xp, (kh, kw), stride)  # (N, C, H', W', kh, kw), a view
    Ho, Wo = win.shape[2], win.shape[3]
    K, L = C * kh * kw, Ho * Wo
    size = Xp.element_size()
    if Wo >= kw:
        W2 = weight.reshape(F_out, K)  # (F, C*kh*kw)
        view = win.permute(0, 1, 4, 5, 2, 3)  # (N, C, kh, kw, H', W')
        B = _chunk(Xp, N, K * L * size)
        buf = Xp.new_empty((B, C, kh, kw, Ho, Wo))  # reused by every chunk
        Y = Xp.new_empty((N, F_out, L))
        for start in range(0, N, B):
            stop = min(N, start + B)
            cols = buf[: stop - start]
            cols.copy_(view[start:stop])
            torch.bmm(W2.expand(stop - start, F_out, K), cols.view(-1, K, L), out=Y[start:stop])  # (B, F, L)
        return Y.view(N, F_out, Ho, Wo)
    view = win.permute(0, 2, 3, 1, 4, 5)  # (N, H', W', C, kh, kw)
    Cc = _chunk(Xp, C, N * L * kh * kw * size)
    buf = Xp.new_empty((N, Ho, Wo, Cc, kh, kw))
    Yt = Xp.new_zeros((N * L, F_out))
    for start in range(0, C, Cc):
        stop = min(C, start + Cc)
        cols = buf[:, :, :, : stop - start]
        cols.copy_(view[:, :, :, start:stop])
        Wc = weight[:, start:stop].reshape(F_out, -1)  # (F, c*kh*kw)
        Yt.addmm_(cols.reshape(N * L, -1), Wc.T)  # (N*L, F)
    return Yt.view(N, Ho, Wo, F_out).permute(0, 3, 1, 2).contiguous()


def _dilate(dY: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Spread the rows and columns of dY apart by the stride, zeros in between: a stride-1 grid."""
    sh, sw = stride
    if sh == sw == 1:
        return dY
    N, F_out, Ho, Wo = dY.shape
    D = dY.new_zeros((N, F_out, (Ho - 1) * sh + 1, (Wo - 1) * sw + 1))
    D[:, :, ::sh, ::sw] = dY
    return D


class _Conv2dFunction(torch.autograd.Function):
    """conv2d with a backward written out, from differentiable ops, so gradients of gradients work too.

    - dL/dX: each image's columns get W^T @ dL/dY (a matrix product), and F.fold adds every
      window's column back onto the pixels it was copied from (col2im, the transpose of im2col).
    - dL/dW: a cross-correlation again, computed by this same function: the padded input,
      with batch and channel axes swapped, correlated with dL/dY (spread out by the stride) as
      the kernel. Summing over images and output pixels is what that correlation does.
    """

    @staticmethod
    def forward(ctx, X, weight, bias, stride, padding):
        ph, pw = padding
        ctx.save_for_backward(X, weight)
        ctx.stride, ctx.padding = stride, padding
        _, _, kh, kw = weight.shape
        if stride == (1, 1) and X.shape[3] + 2 * pw - kw + 1 >= kw:
            Y = _corr_flat(X, weight, padding)
        else:
            Y = _corr_padded(F.pad(X, (pw, pw, ph, ph)) if ph or pw else X, weight, stride)
        if bias is not None:
            Y += bias.view(1, -1, 1, 1)
        return Y

    @staticmethod
    def backward(ctx, dY):
        X, weight = ctx.saved_tensors
        (ph, pw), stride = ctx.padding, ctx.stride
        N, C, H, W = X.shape
        F_out, _, kh, kw = weight.shape
        K, L = C * kh * kw, dY.shape[2] * dY.shape[3]
        need_X, need_W, need_b = ctx.needs_input_grad[:3]
        dX = dW = db = None
        if need_X:
            W2t = weight.reshape(F_out, K).T.contiguous()  # (C*kh*kw, F); bmm is slow on a transposed expand
            dY3 = dY.reshape(N, F_out, L)  # (N, F, L)
            B = _chunk(X, N, K * L * X.element_size())
            parts = [
                F.fold(
                    torch.bmm(W2t.expand(len(d), K, F_out), d),  # (B, C*kh*kw, L): dL/d(columns)
                    (H + 2 * ph, W + 2 * pw), (kh, kw), stride=stride,
                )  # (B, C, Hp, Wp)
                for d in dY3.split(B)
            ]
            dXp = parts[0] if len(parts) == 1 else torch.cat(parts)
            dX = dXp[:, :, ph : ph + H, pw : pw + W]  # (N, C, H, W): padding gets no gradient
        if need_W:
            Xp = F.pad(X, (pw, pw, ph, ph)) if ph or pw else X
            D = _dilate(dY, stride)  # (N, F, Hd, Wd)
            dWt = _conv2d(Xp.transpose(0, 1), D.transpose(0, 1), None, (1, 1), (0, 0))  # (C, F, >= kh, >= kw)
            dW = dWt[:, :, :kh, :kw].transpose(0, 1)  # (F, C, kh, kw)
        if need_b:
            db = dY.sum(dim=(0, 2, 3))
        return dX, dW, db, None, None


_conv2d = _Conv2dFunction.apply


def conv2d(
    X: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
) -> torch.Tensor:
    """Vectorized 2-D convolution layer (cross-correlation), as torch.nn.functional.conv2d.

    The windows are a strided view of the padded input (im2col without a Python loop over
    pixels); copied a few images at a time, they meet the flattened kernels in one batched
    matrix product. The backward pass (_Conv2dFunction) is a matrix product followed by col2im
    for the input and another such cross-correlation for the weight.

    Inputs:
    - X: (N, C, H, W) or (C, H, W)
    - weight: (F, C, kh, kw)
    - bias: (F,) or None
    - stride: int or (sh, sw), at least 1
    - padding: int or (ph, pw), zeros added on each side

    Returns: (N, F, H', W') or (F, H', W'), where
    H' = (H + 2*ph - kh) // sh + 1 and W' = (W + 2*pw - kw) // sw + 1.
    """
    check_tensor("X", X, (3, 4), "(N, C, H, W) or (C, H, W)")
    check_tensor("weight", weight, (4,), "(F, C, kh, kw)")
    check_same("X", X, "weight", weight)
    sh, sw = pair("stride", stride, 1)
    ph, pw = pair("padding", padding, 0)
    unbatched = X.dim() == 3
    if unbatched:
        X = X.unsqueeze(0)
    N, C, H, W = X.shape
    F_out, C_w, kh, kw = weight.shape
    if C_w != C:
        raise ValueError(f"X has {C} channels but weight expects {C_w}: weight must have shape (F, {C}, kh, kw)")
    check_fits((kh, kw), (H, W), (ph, pw), "kernel")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (F_out,):
            got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
            raise ValueError(f"bias must be a tensor of shape ({F_out},), got {got}")
        check_same("X", X, "bias", bias)

    Y = _conv2d(X, weight, bias, (sh, sw), (ph, pw))  # (N, F, H', W')
    return Y[0] if unbatched else Y


def _offset_views(Xp: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]):
    """For each offset (a, b) inside the window, in row-major order, the strided view of Xp
    holding element (a, b) of every window: Xp[..., a + sh*i, b + sw*j] for i < H', j < W'."""
    (kh, kw), (sh, sw), (Ho, Wo) = kernel, stride, out
    for a in range(kh):
        for b in range(kw):
            yield Xp[..., a : a + sh * (Ho - 1) + 1 : sh, b : b + sw * (Wo - 1) + 1 : sw]  # (..., H', W')


def _pool_chunk(X: torch.Tensor, kernel, stride, padding, mode: str) -> torch.Tensor:
    """Pool a few channels X of shape (M, 1, H, W) -> (M, 1, H', W'): one elementwise step per
    offset (a, b) inside the window, over the strided view of every window's element (a, b)."""
    (kh, kw), (ph, pw) = kernel, padding
    Xp = F.pad(X, (pw, pw, ph, ph), value=float("-inf") if mode == "max" else 0.0) if ph or pw else X
    out = ((Xp.shape[-2] - kh) // stride[0] + 1, (Xp.shape[-1] - kw) // stride[1] + 1)
    views = _offset_views(Xp, kernel, stride, out)
    Y = next(views).clone()
    for V in views:
        if mode == "max":
            torch.maximum(Y, V, out=Y)
        else:
            Y += V
    if mode == "avg":
        Y /= kh * kw  # zero padding counted, as count_include_pad=True
    return Y


def _pool_chunk_backward(X, Y, dY, kernel, stride, padding, mode: str) -> torch.Tensor:
    """dL/dX for one chunk of _pool_chunk: the gradient added back through the same views."""
    (kh, kw), (ph, pw) = kernel, padding
    H, W = X.shape[-2:]
    dXp = dY.new_zeros(X.shape[:-2] + (H + 2 * ph, W + 2 * pw))
    out = tuple(Y.shape[-2:])
    if mode == "avg":
        g = dY / (kh * kw)
        for dV in _offset_views(dXp, kernel, stride, out):
            dV += g
    else:
        Xp = F.pad(X, (pw, pw, ph, ph), value=float("-inf")) if ph or pw else X
        taken = torch.zeros_like(Y, dtype=torch.bool)  # windows whose maximum already has the gradient
        for V, dV in zip(_offset_views(Xp, kernel, stride, out), _offset_views(dXp, kernel, stride, out)):
            hit = (V == Y) & ~taken
            taken |= hit
            dV += dY * hit
    return dXp[..., ph : ph + H, pw : pw + W]


class _Pool2dFunction(torch.autograd.Function):
    """Pooling as kh*kw elementwise steps over strided views, one per offset inside the window,
    rather than a reduction over a 6-D view of the windows; a few channels at a time, so that
    the running result stays in cache. The backward adds the gradient back through the same
    views, with differentiable ops, so it can be differentiated again.

    Max pooling sends each window's gradient to its first maximum in row-major order, as
    F.max_pool2d does when a window holds ties.
    """

    @staticmethod
    def forward(ctx, X, kernel, stride, padding, mode):
        ctx.args = (kernel, stride, padding, mode)
        H, W = X.shape[-2:]
        step = _chunk(X, X.shape[0], (H + 2 * padding[0]) * (W + 2 * padding[1]) * X.element_size())
        parts = [_pool_chunk(Xc, *ctx.args) for Xc in X.split(step)]
        Y = parts[0] if len(parts) == 1 else torch.cat(parts)  # (M, 1, H', W')
        ctx.save_for_backward(X, Y)
        ctx.step = step
        return Y

    @staticmethod
    def backward(ctx, dY):
        X, Y = ctx.saved_tensors
        parts = [
            _pool_chunk_backward(Xc, Yc, dYc, *ctx.args)
            for Xc, Yc, dYc in zip(X.split(ctx.step), Y.split(ctx.step), dY.split(ctx.step))
        ]
        dX = parts[0] if len(parts) == 1 else torch.cat(parts)
        return dX, None, None, None, None


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
        raise ValueError(f"padding must be at most half of pool_size on each axis, got padding {(ph, pw)} for pool_size {(kh, kw)}")
    lead = X.shape[:-2]
    H, W = X.shape[-2:]
    check_fits((kh, kw), (H, W), (ph, pw), "pool_size")
    X4 = X.reshape(-1, 1, H, W)  # (N*C, 1, H, W): every channel pooled alone
    Y = _Pool2dFunction.apply(X4, (kh, kw), (sh, sw), (ph, pw), mode)  # (N*C, 1, H', W')
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
