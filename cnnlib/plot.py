"""Figures for the chapters, all drawn with matplotlib from data passed in.

Every function takes tensors (on any device) or arrays, draws one figure and returns its axes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch


class _LazyPyplot:
    """matplotlib.pyplot, imported on first use: `import cnnlib` then costs no pyplot import
    (about 0.6 s) for code that draws nothing, such as a training script or a grading kernel."""

    def __getattr__(self, name: str):
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)


plt = _LazyPyplot()


def _to_numpy(img):
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        if img.dim() == 3 and img.shape[0] == 1:  # (1, H, W) -> (H, W)
            img = img[0]
        return img.numpy()
    return img


def _as_2d(name: str, M) -> np.ndarray:
    A = np.asarray(_to_numpy(M), dtype=float)
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D tensor or array (H, W), got shape {A.shape}")
    return A


def show_images(
    imgs: Sequence, num_rows: int, num_cols: int, titles: Sequence[str] | None = None, scale: float = 1.5, cmap: str = "gray",
    vmin: float | None = None, vmax: float | None = None,
):
    """A grid of images (tensors (H, W) or (1, H, W), or arrays) with optional titles. Returns the axes.

    vmin and vmax fix one colour scale for every image (by default each image is scaled to its own
    range, which hides a change of brightness or contrast)."""
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(num_cols * scale, num_rows * scale), squeeze=False)
    axes = axes.flatten()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(imgs):
            ax.imshow(_to_numpy(imgs[i]), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return axes


def plot_history(history: dict, title: str | None = None):
    """Loss and accuracies per epoch from cnnlib.train's history. Returns the axes (loss, accuracy)."""
    for key in ("epoch", "loss", "train_acc", "test_acc"):
        if key not in history:
            raise ValueError(f"history must have the key {key!r} (as returned by cnnlib.train)")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3))
    ax_loss.plot(history["epoch"], history["loss"], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot(history["epoch"], history["train_acc"], marker="o", label="train acc")
    ax_acc.plot(history["epoch"], history["test_acc"], marker="s", label="test acc")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return ax_loss, ax_acc


def show_matrix(
    M,
    ax=None,
    title: str | None = None,
    highlight: tuple[int, int, int, int] | None = None,
    fmt: str = "{:g}",
    cmap: str = "Blues",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = True,
):
    """A small matrix drawn as coloured cells with its values written in.

    Inputs:
    - M: (H, W) tensor or array
    - highlight: (row, col, height, width) of a block to outline in red, or None
    - fmt: format of each written value; annotate=False writes none (for larger matrices)

    Returns: the axes.
    """
    A = _as_2d("M", M)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * A.shape[1] + 0.6, 0.5 * A.shape[0] + 0.6))
    lo = A.min() if vmin is None else vmin
    hi = A.max() if vmax is None else vmax
    image = ax.imshow(A, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1)
    if annotate:
        for i in range(A.shape[0]):
            for j in range(A.shape[1]):
                r, g, b, _ = image.cmap(image.norm(A[i, j]))
                # dark text on light cells, white text on dark ones
                color = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
                ax.text(j, i, fmt.format(A[i, j]), ha="center", va="center", fontsize=9, color=color)
    ax.set_xticks(np.arange(A.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(A.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="gray", linewidth=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if highlight is not None:
        r, c, h, w = highlight
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h, fill=False, edgecolor="red", linewidth=2.5))
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_corr2d_steps(X, K, Y, positions: Sequence[tuple[int, int]] | None = None):
    """The sliding window of a cross-correlation: one row per output position (i, j), showing
    X with the window X[i:i+kh, j:j+kw] outlined, the kernel K, and Y with entry Y[i, j] outlined.

    Inputs: X (H, W), K (kh, kw), Y (H-kh+1, W-kw+1); positions defaults to every output position.
    Returns: the axes, of shape (len(positions), 3).
    """
    X, K, Y = _as_2d("X", X), _as_2d("K", K), _as_2d("Y", Y)
    kh, kw = K.shape
    if Y.shape != (X.shape[0] - kh + 1, X.shape[1] - kw + 1):
        raise ValueError(f"Y must have shape {(X.shape[0] - kh + 1, X.shape[1] - kw + 1)} for these X and K, got {Y.shape}")
    if positions is None:
        positions = [(i, j) for i in range(Y.shape[0]) for j in range(Y.shape[1])]
    fig, axes = plt.subplots(len(positions), 3, figsize=(8, 2.4 * len(positions)), squeeze=False,
                             gridspec_kw={"width_ratios": [X.shape[1], K.shape[1], Y.shape[1]]})
    for row, (i, j) in enumerate(positions):
        window = X[i : i + kh, j : j + kw]
        terms = " + ".join(f"{x:g}·{k:g}" for x, k in zip(window.ravel(), K.ravel()))
        show_matrix(X, axes[row, 0], title="input X", highlight=(i, j, kh, kw))
        show_matrix(K, axes[row, 1], title="kernel K", cmap="Oranges")
        show_matrix(Y, axes[row, 2], highlight=(i, j, 1, 1), cmap="Greens")
        axes[row, 2].set_title(f"Y[{i}, {j}] =\n{terms}\n= {Y[i, j]:g}", fontsize=8)
    fig.tight_layout()
    return axes


def plot_feature_maps_3d(T, ax=None, title: str | None = None, cmap: str = "viridis", spacing: float = 1.0):
    """A (C, H, W) tensor drawn as C feature maps stacked one behind the other in 3-D.

    Each channel is a plane of coloured pixels, normalised on its own, at depth c * spacing.
    Returns: the 3-D axes.
    """
    A = np.asarray(_to_numpy(T), dtype=float)
    if A.ndim != 3:
        raise ValueError(f"T must have shape (C, H, W), got {A.shape}")
    C, H, W = A.shape
    if ax is None:
        fig = plt.figure(figsize=(6, 4))
        ax = fig.add_subplot(projection="3d")
    colormap = plt.get_cmap(cmap)
    cols, rows = np.meshgrid(np.arange(W + 1), np.arange(H + 1))  # pixel corners, (H+1, W+1)
    grid = H * W <= 144  # outline the pixels of small maps only
    for c in range(C):
        a = A[c]
        span = a.max() - a.min()
        colors = colormap((a - a.min()) / span if span > 0 else np.zeros_like(a))  # (H, W, 4)
        depth = np.full(cols.shape, c * spacing, dtype=float)
        ax.plot_surface(depth, cols, H - rows, facecolors=colors, shade=False, rstride=1, cstride=1,
                        edgecolor="white" if grid else "none", linewidth=0.3 if grid else 0, antialiased=False)
    ax.set_xlabel("channel")
    ax.set_ylabel("width")
    ax.set_zlabel("height")
    ax.set_xticks(np.arange(C) * spacing)
    ax.set_xticklabels([str(c) for c in range(C)])
    ax.set_yticks([0, W])
    ax.set_zticks([0, H])
    ax.set_box_aspect((2.6, W / max(H, W), H / max(H, W)))
    ax.view_init(elev=15, azim=-50)
    if title:
        ax.set_title(title)
    return ax


def plot_receptive_fields(stacks: Mapping[str, Sequence[tuple[int, int]]], ax=None):
    """Receptive-field size after each layer, for several stacks of (kernel, stride) layers.

    Inputs: stacks, a mapping from a label to its layers, first layer first.
    Returns: the axes; the plotted sizes are those of cnnlib.receptive_field.
    """
    from .shapes import receptive_field

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, layers in stacks.items():
        layers = list(layers)
        sizes = [receptive_field(layers[:depth]) for depth in range(len(layers) + 1)]
        ax.plot(range(len(layers) + 1), sizes, marker="o", label=label)
    ax.set_xlabel("number of layers")
    ax.set_ylabel("receptive field (pixels per side)")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_confusion_matrix(cm, labels: Sequence[str], ax=None, title: str | None = None):
    """A confusion matrix cm[true, predicted] of counts, each row normalised to sum to 1.

    Inputs: cm of shape (K, K), labels of length K.
    Returns: the axes.
    """
    A = _as_2d("cm", cm)
    if A.shape[0] != A.shape[1] or A.shape[0] != len(labels):
        raise ValueError(f"cm must have shape (K, K) with K = len(labels) = {len(labels)}, got {A.shape}")
    totals = A.sum(axis=1, keepdims=True)
    rates = np.divide(A, totals, out=np.zeros_like(A), where=totals > 0)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * len(labels) + 2.5, 0.45 * len(labels) + 2))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            if A[i, j]:
                ax.text(j, i, f"{int(A[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if max(map(len, labels)) > 2 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if title:
        ax.set_title(title)
    return ax


# --- Figures: the kernel flip, channels, 1×1 convolutions, pooling per channel, global pooling -----------------
# New functions only, appended here; each draws one compact figure (at most 7 inches wide) for a narrow column.


def _outline(ax, row: int, col: int, height: int = 1, width: int = 1, color: str = "red"):
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False, edgecolor=color, linewidth=2.5))


def _index_ticks(ax, shape: tuple[int, int]):
    """Row and column indices on the left and top of a show_matrix panel."""
    ax.set_xticks(range(shape[1]))
    ax.set_yticks(range(shape[0]))
    ax.tick_params(which="major", labelleft=True, labeltop=True, labelsize=8, length=0)


def plot_kernel_flip(K, Z_full, Y):
    """A true convolution as a cross-correlation with the flipped kernel, and its index shift.

    Inputs:
    - K: the kernel (kh, kw)
    - Z_full: the full convolution X * K, (H + kh - 1, W + kw - 1)
    - Y: corr2d(X, flip(K)), (H - kh + 1, W - kw + 1)

    Draws K, K flipped, Z_full with the block Z_full[kh-1 : kh-1+H', kw-1 : kw-1+W'] outlined and
    its indices written on the axes, and Y, which equals that block. Returns the axes, (2, 2).
    """
    K, Z, Y = _as_2d("K", K), _as_2d("Z_full", Z_full), _as_2d("Y", Y)
    kh, kw = K.shape
    H, W = Z.shape[0] - kh + 1, Z.shape[1] - kw + 1  # the input's size
    if Y.shape != (H - kh + 1, W - kw + 1):
        raise ValueError(f"Y must have shape {(H - kh + 1, W - kw + 1)} for this K and Z_full, got {Y.shape}")
    fig, axes = plt.subplots(2, 2, figsize=(6, 6), gridspec_kw={"width_ratios": [Z.shape[1], Y.shape[1] + 1],
                                                                  "height_ratios": [kh + 1, Z.shape[0]]})
    show_matrix(K, axes[0, 0], title="kernel K", cmap="Oranges")
    show_matrix(np.flip(K, axis=(0, 1)), axes[0, 1], title="K flipped", cmap="Oranges")
    show_matrix(Z, axes[1, 0], cmap="Greens")
    _index_ticks(axes[1, 0], Z.shape)
    _outline(axes[1, 0], kh - 1, kw - 1, Y.shape[0], Y.shape[1])
    axes[1, 0].set_title(f"full convolution X * K\nblock from ({kh - 1}, {kw - 1}) = ($k_h-1$, $k_w-1$)", fontsize=10)
    show_matrix(Y, axes[1, 1], cmap="Greens", highlight=(0, 0, *Y.shape))
    _index_ticks(axes[1, 1], Y.shape)
    axes[1, 1].set_title("corr2d(X, K flipped)\nindices from (0, 0)", fontsize=10)
    fig.tight_layout()
    return axes


def plot_channel_sum(X, K, fmt: str = "{:g}"):
    """A multi-input-channel cross-correlation as one row per channel plus the sum.

    Inputs: X (C, H, W) and K (C, kh, kw), small enough to write their values in.
    Row c shows X[c], K[c] and corr2d(X[c], K[c]); the last row shows the sum over c, the output.
    Returns: the axes, (C + 1, 3).
    """
    A, B = np.asarray(_to_numpy(X), dtype=float), np.asarray(_to_numpy(K), dtype=float)
    if A.ndim != 3 or B.ndim != 3 or A.shape[0] != B.shape[0]:
        raise ValueError(f"X and K must have shapes (C, H, W) and (C, kh, kw) with the same C, got {A.shape}, {B.shape}")
    from .ops import corr2d

    parts = [corr2d(torch.from_numpy(A[c]), torch.from_numpy(B[c])).numpy() for c in range(A.shape[0])]
    total = np.sum(parts, axis=0)
    C = A.shape[0]
    fig, axes = plt.subplots(C + 1, 3, figsize=(6, 1.9 * (C + 1)), squeeze=False,
                             gridspec_kw={"width_ratios": [A.shape[2], B.shape[2], total.shape[1]]})
    for c in range(C):
        show_matrix(A[c], axes[c, 0], title=f"input channel {c}", fmt=fmt)
        show_matrix(B[c], axes[c, 1], title=f"kernel slice {c}", cmap="Oranges", fmt=fmt)
        show_matrix(parts[c], axes[c, 2], title=f"channel {c} ⋆ slice {c}", cmap="Purples", fmt=fmt)
    axes[C, 0].axis("off")
    axes[C, 1].axis("off")
    axes[C, 1].text(0.5, 0.5, "sum over\nthe channels →", ha="center", va="center", fontsize=10,
                    transform=axes[C, 1].transAxes)
    show_matrix(total, axes[C, 2], title="output: the sum", cmap="Greens", fmt=fmt)
    fig.tight_layout()
    return axes


def plot_1x1_as_dense(X, W, pixel: tuple[int, int]):
    """A 1×1 convolution as the same dense layer at every pixel.

    Inputs: X (c_i, H, W), W (c_o, c_i) the 1×1 kernel as a matrix, pixel (i, j).
    Top row: the c_i input maps with pixel (i, j) outlined. Middle row: the vector X[:, i, j], the
    matrix W and the vector W @ X[:, i, j]. Bottom row: the c_o output maps, pixel (i, j) outlined.
    Returns: the axes of the middle row (x, W, y).
    """
    A, M = np.asarray(_to_numpy(X), dtype=float), _as_2d("W", W)
    if A.ndim != 3 or M.shape[1] != A.shape[0]:
        raise ValueError(f"X must be (c_i, H, W) and W (c_o, c_i) with the same c_i, got {A.shape} and {M.shape}")
    i, j = pixel
    if not (0 <= i < A.shape[1] and 0 <= j < A.shape[2]):
        raise ValueError(f"pixel must lie inside the {A.shape[1]}×{A.shape[2]} maps, got {pixel}")
    c_i, c_o = A.shape[0], M.shape[0]
    Y = np.einsum("oc,chw->ohw", M, A)
    lim = max(np.abs(A).max(), np.abs(Y).max())
    fig = plt.figure(figsize=(6.5, 7))
    grid = fig.add_gridspec(3, 1, height_ratios=[1, 1.3, 1])
    top = grid[0].subgridspec(1, max(c_i, c_o))
    mid = grid[1].subgridspec(1, 3, width_ratios=[1, c_i, 1])
    bottom = grid[2].subgridspec(1, max(c_i, c_o))
    for c in range(c_i):
        ax = fig.add_subplot(top[0, c])
        show_matrix(A[c], ax, title=f"input channel {c}", cmap="RdBu_r", vmin=-lim, vmax=lim, annotate=False)
        _outline(ax, i, j)
    x, y = A[:, i, j][:, None], Y[:, i, j][:, None]
    ax_x, ax_w, ax_y = (fig.add_subplot(mid[0, k]) for k in range(3))
    show_matrix(x, ax_x, title=f"X[:, {i}, {j}]", fmt="{:.1f}", cmap="RdBu_r", vmin=-lim, vmax=lim)
    show_matrix(M, ax_w, title=f"W ({c_o}×{c_i})", fmt="{:.1f}", cmap="Oranges")
    show_matrix(y, ax_y, title=f"W @ X[:, {i}, {j}]", fmt="{:.1f}", cmap="RdBu_r", vmin=-lim, vmax=lim)
    for c in range(c_o):
        ax = fig.add_subplot(bottom[0, c])
        show_matrix(Y[c], ax, title=f"output channel {c}", cmap="RdBu_r", vmin=-lim, vmax=lim, annotate=False)
        _outline(ax, i, j)
    fig.tight_layout()
    return ax_x, ax_w, ax_y


def show_maps_shared_scale(maps, titles: Sequence[str] | None = None, num_cols: int = 3, cmap: str = "RdBu_r",
                           label: str = "response"):
    """Feature maps (C, H, W) on one colour scale, symmetric around 0, with one colour bar.

    Returns: the axes, (ceil(C / num_cols), num_cols).
    """
    A = np.asarray(_to_numpy(maps), dtype=float)
    if A.ndim != 3:
        raise ValueError(f"maps must have shape (C, H, W), got {A.shape}")
    rows = -(-A.shape[0] // num_cols)
    lim = float(np.abs(A).max()) or 1.0
    fig, axes = plt.subplots(rows, num_cols, figsize=(6.5, 2.5 * rows + 0.6), squeeze=False)
    image = None
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < A.shape[0]:
            image = ax.imshow(A[k], cmap=cmap, vmin=-lim, vmax=lim)
            if titles is not None and k < len(titles):
                ax.set_title(titles[k], fontsize=10)
    fig.tight_layout()
    fig.colorbar(image, ax=axes, orientation="horizontal", fraction=0.05, pad=0.04, label=label)
    return axes


def plot_layer_io_3d(image, maps, title_in: str = "input", title_out: str = "output", cmap: str = "RdBu_r"):
    """A layer's input (H, W) on the left and its output (C, H', W') on the right, drawn as a stack
    of C planes in 3-D, all on one colour scale symmetric around 0, with a colour bar.

    Returns: (input axes, 3-D output axes).
    """
    img = _as_2d("image", image)
    A = np.asarray(_to_numpy(maps), dtype=float)
    if A.ndim != 3:
        raise ValueError(f"maps must have shape (C, H, W), got {A.shape}")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    C, H, W = A.shape
    lim = float(np.abs(A).max()) or 1.0
    norm, colormap = Normalize(-lim, lim), plt.get_cmap(cmap)
    fig = plt.figure(figsize=(7, 3.6))
    ax_in = fig.add_subplot(1, 5, (1, 2))
    ax_in.imshow(img, cmap="gray")
    ax_in.set_title(title_in, fontsize=10)
    ax_in.axis("off")
    ax = fig.add_subplot(1, 5, (3, 5), projection="3d")
    cols, rows = np.meshgrid(np.arange(W + 1), np.arange(H + 1))
    for c in range(C):
        depth = np.full(cols.shape, 2.0 * c)
        ax.plot_surface(depth, cols, H - rows, facecolors=colormap(norm(A[c])), shade=False, rstride=1, cstride=1,
                        edgecolor="none", linewidth=0, antialiased=False)
    ax.set_xlabel("channel")
    ax.set_xticks(2.0 * np.arange(C))
    ax.set_xticklabels([str(c) for c in range(C)])
    ax.set_yticks([0, W])
    ax.set_zticks([0, H])
    ax.set_box_aspect((2.6, 1, H / W))
    ax.view_init(elev=15, azim=-50)
    ax.set_title(title_out, fontsize=10)
    fig.colorbar(ScalarMappable(norm, colormap), ax=ax, shrink=0.6, pad=0.12, label="response")
    fig.text(0.42, 0.5, "→", fontsize=22, ha="center", va="center")
    return ax_in, ax


def plot_pool_per_channel(X, Y, title: str = "2×2 max pooling"):
    """Pooling acts on each channel alone: row c shows X[c] and its pooled map Y[c].

    Inputs: X (C, H, W), Y (C, H', W'), small enough to write their values in.
    Returns: the axes, (C, 2).
    """
    A, B = np.asarray(_to_numpy(X), dtype=float), np.asarray(_to_numpy(Y), dtype=float)
    if A.ndim != 3 or B.ndim != 3 or A.shape[0] != B.shape[0]:
        raise ValueError(f"X and Y must have shapes (C, H, W) and (C, H', W') with the same C, got {A.shape}, {B.shape}")
    C = A.shape[0]
    fig, axes = plt.subplots(C, 2, figsize=(5.5, 2.2 * C), squeeze=False,
                             gridspec_kw={"width_ratios": [A.shape[2], B.shape[2] + 1]})
    cmaps = ["Blues", "Oranges", "Greens", "Purples", "Reds", "Greys"]
    for c in range(C):
        show_matrix(A[c], axes[c, 0], title=f"input channel {c}", cmap=cmaps[c % len(cmaps)])
        if A.shape[1] % B.shape[1] == 0 and A.shape[2] % B.shape[2] == 0:  # non-overlapping windows: draw them
            wh, ww = A.shape[1] // B.shape[1], A.shape[2] // B.shape[2]
            for k in range(1, B.shape[1]):
                axes[c, 0].axhline(k * wh - 0.5, color="black", linewidth=2)
            for k in range(1, B.shape[2]):
                axes[c, 0].axvline(k * ww - 0.5, color="black", linewidth=2)
        show_matrix(B[c], axes[c, 1], title=f"{title}\nof channel {c} only", cmap=cmaps[c % len(cmaps)])
    fig.tight_layout()
    return axes


def plot_global_avg_pool(X, titles: Sequence[str] | None = None):
    """Global average pooling: each channel of X (C, H, W) becomes one number, its mean.

    Top: the C maps on one colour scale; bottom: the C means as a 1 × C row.
    Returns: (axes of the maps, axes of the means).
    """
    A = np.asarray(_to_numpy(X), dtype=float)
    if A.ndim != 3:
        raise ValueError(f"X must have shape (C, H, W), got {A.shape}")
    C = A.shape[0]
    means = A.mean(axis=(1, 2))
    lo, hi = float(A.min()), float(A.max())
    fig = plt.figure(figsize=(6.5, 3.6))
    grid = fig.add_gridspec(2, C, height_ratios=[2.2, 1])
    map_axes = []
    for c in range(C):
        ax = fig.add_subplot(grid[0, c])
        ax.imshow(A[c], cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(titles[c] if titles is not None and c < len(titles) else f"channel {c}", fontsize=10)
        ax.axis("off")
        map_axes.append(ax)
    ax_mean = fig.add_subplot(grid[1, :])
    show_matrix(means[None, :], ax_mean, fmt="{:.2f}", cmap="viridis", vmin=lo, vmax=hi)
    ax_mean.set_title(f"global average pooling: ({C}, H, W) → ({C}, 1, 1), one mean per channel", fontsize=10)
    fig.tight_layout()
    return map_axes, ax_mean
