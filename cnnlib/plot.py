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
    imgs: Sequence, num_rows: int, num_cols: int, titles: Sequence[str] | None = None, scale: float = 1.5, cmap: str = "gray"
):
    """A grid of images (tensors (H, W) or (1, H, W), or arrays) with optional titles. Returns the axes."""
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(num_cols * scale, num_rows * scale), squeeze=False)
    axes = axes.flatten()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(imgs):
            ax.imshow(_to_numpy(imgs[i]), cmap=cmap)
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
