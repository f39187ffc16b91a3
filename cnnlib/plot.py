"""Figures for the chapters, all drawn with matplotlib from data passed in."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch


def _to_numpy(img):
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        if img.dim() == 3 and img.shape[0] == 1:  # (1, H, W) -> (H, W)
            img = img[0]
        return img.numpy()
    return img


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
