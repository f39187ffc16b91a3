"""The fast engine behind cnnlib.conv2d and cnnlib.pool2d: cache-sized im2col, batched matrix
products, and backward passes written out from differentiable ops (so gradients of gradients
work too).

The chapters teach the operations in cnnlib.ops; this module is only how the vectorized ones
are made fast. Arguments arrive checked and normalised: X is (N, C, H, W), kernel sizes,
strides, paddings and dilations are pairs, groups divides both channel counts.

Groups: the C input channels are G blocks of C/G; output channel f sees only block f // (F/G).
The im2col columns of one image are then G blocks of (C/G)*kh*kw rows, and each block meets its
own (F/G, (C/G)*kh*kw) weight matrix: a batched matrix product with the groups in the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _windows(
    X: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int] = (1, 1)
) -> torch.Tensor:
    """A strided view of every (kh, kw) window, its taps `dilation` apart: (N, C, H, W) -> (N, C, H', W', kh, kw).
    No copy: a dilated window is a span of d*(k-1)+1 pixels of which every d-th is kept."""
    (kh, kw), (dh, dw) = kernel, dilation
    spans = X.unfold(2, dh * (kh - 1) + 1, stride[0]).unfold(3, dw * (kw - 1) + 1, stride[1])
    return spans[..., ::dh, ::dw]


# How many bytes of im2col columns conv2d builds at a time (pool2d: of input). On the CPU a
# chunk small enough to stay in the cores' caches (this much per thread) is read back by the
# matmul at cache speed instead of from memory; a GPU wants the whole batch in one matmul.
_CPU_COLS_BYTES = 1 << 20
_GPU_COLS_BYTES = 1 << 28


def _chunk(X: torch.Tensor, count: int, bytes_each: int) -> int:
    """How many of `count` items of `bytes_each` bytes make one chunk of work on X's device."""
    budget = _GPU_COLS_BYTES if X.is_cuda else _CPU_COLS_BYTES * torch.get_num_threads()  # per core
    return max(1, min(count, budget // max(1, bytes_each)))


def _group_weights(weight: torch.Tensor, groups: int, B: int) -> torch.Tensor:
    """The weight as B copies of G matrices, one per group, for torch.bmm with images and groups
    in the batch: (F, C/G, kh, kw) -> (B*G, F/G, (C/G)*kh*kw). A view when G = 1, else a small copy."""
    F_out = weight.shape[0]
    W3 = weight.reshape(groups, F_out // groups, -1)  # (G, F/G, (C/G)*kh*kw)
    return W3.expand(B, *W3.shape).reshape(B * groups, *W3.shape[1:])


def _corr_flat(
    X: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1), groups: int = 1,
) -> torch.Tensor:
    """Stride-1 cross-correlation with columns that are whole stretches of the flattened image.

    Pad each (Hp, Wp) plane and lay the planes end to end. Kernel offset (a, b) then sees the
    stretch of Ho*Wp numbers starting at a*dh*Wp + b*dw: every output row plus Wp - Wo extra
    numbers that run past the row's end. Copying such long stretches is far cheaper than copying
    rows of Wo numbers one by one; the product computes the extra columns too, and they are
    dropped at the end. No autograd here.

    Inputs: X (N, C, H, W), weight (F, C/G, kh, kw), padding (ph, pw), dilation (dh, dw), groups G.
    Returns: Y of shape (N, F, H', W'), contiguous.
    """
    N, C, H, W = X.shape
    F_out, _, kh, kw = weight.shape
    (ph, pw), (dh, dw), G = padding, dilation, groups
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, Wo = Hp - dh * (kh - 1), Wp - dw * (kw - 1)
    P, Lw, K = Hp * Wp, Ho * Wp, C * kh * kw
    flat = X.new_zeros(N * C * P + dw * (kw - 1))  # the last stretch runs dw*(kw - 1) past the last plane
    flat[: N * C * P].view(N, C, Hp, Wp)[:, :, ph : ph + H, pw : pw + W] = X
    view = flat.as_strided((N, C, kh, kw, Lw), (C * P, P, dh * Wp, dw, 1))  # (N, C, kh, kw, H'*Wp), a view
    B = _chunk(X, N, K * Lw * X.element_size())
    cols = X.new_empty((B, K, Lw))  # reused by every chunk
    W2e = _group_weights(weight, G, B)  # (B*G, F/G, K/G)
    Yw = X.new_empty((B, F_out, Ho, Wp))
    Y = X.new_empty((N, F_out, Ho, Wo))
    for start in range(0, N, B):  # few ops per chunk: each costs microseconds
        m = min(B, N - start)
        c, w, y = (cols, W2e, Yw) if m == B else (cols[:m], W2e[: m * G], Yw[:m])
        c.view(m, C, kh, kw, Lw).copy_(view[start : start + m])
        torch.bmm(w, c.view(m * G, K // G, Lw), out=y.view(m * G, F_out // G, Lw))  # (B*G, F/G, H'*Wp)
        Y[start : start + m] = y[..., :Wo]  # drop the extra columns while they are in cache
    return Y


def _corr_padded(
    Xp: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1), groups: int = 1,
) -> torch.Tensor:
    """Cross-correlation of an already padded input by im2col and matrix products, in chunks.

    No autograd here: _Conv2dFunction calls it and supplies the backward.

    Inputs:
    - Xp: (N, C, Hp, Wp), any strides
    - weight: (F, C/G, kh, kw), any strides
    - stride, dilation: pairs; groups: G

    Returns: Y of shape (N, F, H', W'), contiguous, H' = (Hp - dh*(kh-1) - 1) // sh + 1.

    Two ways to cut the work into cache-sized chunks of columns:
    - output rows at least as wide as the kernel (the usual layer): a few images at a time,
      one (F, C*kh*kw) x (C*kh*kw, H'*W') product per image;
    - kernels wider than the output (the weight gradient, where the kernel is dL/dY): all
      images at once, a few channels at a time, summing (N*H'*W', c*kh*kw) x (c*kh*kw, F) products.
    Either way the copy runs along the longer contiguous stretch of the input.
    """
    N, C, _, _ = Xp.shape
    F_out, Cg, kh, kw = weight.shape
    G, Fg = groups, F_out // groups
    win = _windows(Xp, (kh, kw), stride, dilation)  # (N, C, H', W', kh, kw), a view
    Ho, Wo = win.shape[2], win.shape[3]
    K, L = C * kh * kw, Ho * Wo
    size = Xp.element_size()
    if Wo >= kw:
        view = win.permute(0, 1, 4, 5, 2, 3)  # (N, C, kh, kw, H', W')
        B = _chunk(Xp, N, K * L * size)
        W2e = _group_weights(weight, G, B)  # (B*G, F/G, K/G)
        buf = Xp.new_empty((B, C, kh, kw, Ho, Wo))  # reused by every chunk
        Y = Xp.new_empty((N, F_out, L))
        for start in range(0, N, B):
            m = min(N, start + B) - start
            cols = buf[:m]
            cols.copy_(view[start : start + m])
            torch.bmm(W2e[: m * G], cols.view(m * G, K // G, L), out=Y[start : start + m].view(m * G, Fg, L))
        return Y.view(N, F_out, Ho, Wo)
    view = win.permute(0, 2, 3, 1, 4, 5)  # (N, H', W', C, kh, kw)
    Cc = _chunk(Xp, Cg, N * L * kh * kw * size)
    buf = Xp.new_empty((N, Ho, Wo, Cc, kh, kw))
    Yt = Xp.new_zeros((G, N * L, Fg))
    for g in range(G):
        for start in range(0, Cg, Cc):
            stop = min(Cg, start + Cc)
            cols = buf[:, :, :, : stop - start]
            cols.copy_(view[:, :, :, g * Cg + start : g * Cg + stop])
            Wc = weight[g * Fg : (g + 1) * Fg, start:stop].reshape(Fg, -1)  # (F/G, c*kh*kw)
            Yt[g].addmm_(cols.reshape(N * L, -1), Wc.T)  # (N*L, F/G)
    return Yt.view(G, N, Ho, Wo, Fg).permute(1, 0, 4, 2, 3).reshape(N, F_out, Ho, Wo)


class _Conv2dFunction(torch.autograd.Function):
    """conv2d with a backward written out, from differentiable ops, so gradients of gradients work too.

    - dL/dX: each image's columns get W^T @ dL/dY (a matrix product), and F.fold adds every
      window's column back onto the pixels it was copied from (col2im, the transpose of im2col).
    - dL/dW: a cross-correlation again, computed by this same function: the padded input,
      with batch and channel axes swapped, correlated with dL/dY as the kernel. The forward
      stride becomes that kernel's dilation, the forward dilation its stride, and the groups
      stay groups. Summing over images and output pixels is what that correlation does.
    """

    @staticmethod
    def forward(ctx, X, weight, bias, stride, padding, dilation, groups):
        ph, pw = padding
        ctx.save_for_backward(X, weight)
        ctx.stride, ctx.padding, ctx.dilation, ctx.groups = stride, padding, dilation, groups
        _, _, kh, kw = weight.shape
        if stride == (1, 1) and X.shape[3] + 2 * pw - dilation[1] * (kw - 1) >= kw:
            Y = _corr_flat(X, weight, padding, dilation, groups)
        else:
            Y = _corr_padded(F.pad(X, (pw, pw, ph, ph)) if ph or pw else X, weight, stride, dilation, groups)
        if bias is not None:
            Y += bias.view(1, -1, 1, 1)
        return Y

    @staticmethod
    def backward(ctx, dY):
        X, weight = ctx.saved_tensors
        (ph, pw), stride, dilation, G = ctx.padding, ctx.stride, ctx.dilation, ctx.groups
        N, C, H, W = X.shape
        F_out, Cg, kh, kw = weight.shape
        K, L = C * kh * kw, dY.shape[2] * dY.shape[3]
        need_X, need_W, need_b = ctx.needs_input_grad[:3]
        dX = dW = db = None
        if need_X:
            # one (K/G, F/G) matrix per group, contiguous: bmm is slow on a transposed expand
            W2t = _group_weights(weight, G, 1).transpose(1, 2).contiguous()  # (G, K/G, F/G)
            dY3 = dY.reshape(N * G, F_out // G, L)  # (N*G, F/G, L)
            B = _chunk(X, N, K * L * X.element_size())
            parts = [
                F.fold(
                    torch.bmm(W2t.expand(len(d) // G, -1, -1, -1).reshape(len(d), -1, F_out // G), d).view(-1, K, L),
                    (H + 2 * ph, W + 2 * pw), (kh, kw), dilation=dilation, stride=stride,
                )  # (B, C, Hp, Wp): the columns' gradient dL/d(columns), (B, C*kh*kw, L), folded back
                for d in dY3.split(B * G)
            ]
            dXp = parts[0] if len(parts) == 1 else torch.cat(parts)
            dX = dXp[:, :, ph : ph + H, pw : pw + W]  # (N, C, H, W): padding gets no gradient
        if need_W:
            Xp = F.pad(X, (pw, pw, ph, ph)) if ph or pw else X
            Hp, Wp = Xp.shape[2:]
            Xt = Xp.reshape(N, G, Cg, Hp, Wp).permute(2, 1, 0, 3, 4).reshape(Cg, G * N, Hp, Wp)  # group-major
            # (C/G, F, >= kh, >= kw): images are the channels, the output channels' gradients the kernels
            dWt = conv2d(Xt, dY.transpose(0, 1), None, dilation, (0, 0), stride, G)
            dW = dWt[:, :, :kh, :kw].transpose(0, 1)  # (F, C/G, kh, kw)
        if need_b:
            db = dY.sum(dim=(0, 2, 3))
        return dX, dW, db, None, None, None, None


def conv2d(
    X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    stride: tuple[int, int], padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1), groups: int = 1,
) -> torch.Tensor:
    """(X (N, C, H, W), weight (F, C/G, kh, kw), bias (F,) or None, ...) -> (N, F, H', W')."""
    return _Conv2dFunction.apply(X, weight, bias, stride, padding, dilation, groups)


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


pool2d = _Pool2dFunction.apply  # (X (M, 1, H, W), kernel, stride, padding, mode) -> (M, 1, H', W')
