"""A simplified LeNet-5 in two variants, on torch's layers or on cnnlib's own, and a layer-by-layer shape walk."""
from __future__ import annotations

import torch
from torch import nn

from . import layers as L
from ._checks import int_at_least

VARIANTS = ("classic", "modern")
LAYER_SOURCES = ("torch", "cnnlib")


def _xavier_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d, L.Conv2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def lenet(variant: str = "classic", layers: str = "torch", num_classes: int = 10) -> nn.Sequential:
    """A simplified LeNet-5 for 1x28x28 images: the layer sizes of LeCun et al. (1998), not its details.

    - classic: sigmoid activations and plain average pooling, with padding 2 on the first convolution
      so that 28x28 inputs keep the 28x28 maps that the original made from 32x32 inputs. 61,706
      parameters. The 1998 network differs: scaled tanh activations, subsampling layers with a
      trainable coefficient and bias per map, a sparse table connecting the second convolution to
      60 of the 96 map pairs, and Euclidean RBF output units (about 60,000 trainable parameters).
    - modern: ReLU and max pooling, with batch norm after each convolution and before its activation.

    `layers='torch'` uses nn.Conv2d and nn.AvgPool2d/nn.MaxPool2d; `layers='cnnlib'` uses this
    library's from-scratch Conv2d and pooling layers. Weights get Xavier initialisation.

    Inputs: X of shape (N, 1, 28, 28). Returns: logits of shape (N, num_classes).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if layers not in LAYER_SOURCES:
        raise ValueError(f"layers must be one of {LAYER_SOURCES}, got {layers!r}")
    int_at_least("num_classes", num_classes, 1)
    Conv = nn.Conv2d if layers == "torch" else L.Conv2d
    if variant == "classic":
        Pool = nn.AvgPool2d if layers == "torch" else L.AvgPool2d
        net = nn.Sequential(
            Conv(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), Pool(kernel_size=2, stride=2),  # (N, 6, 14, 14)
            Conv(6, 16, kernel_size=5), nn.Sigmoid(), Pool(kernel_size=2, stride=2),  # (N, 16, 5, 5)
            nn.Flatten(),  # (N, 400)
            nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )
    else:
        Pool = nn.MaxPool2d if layers == "torch" else L.MaxPool2d
        net = nn.Sequential(
            Conv(1, 6, kernel_size=5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), Pool(kernel_size=2, stride=2),
            Conv(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.ReLU(), Pool(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )
    net.apply(_xavier_init)
    return net


def layer_summary(net: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Run a random input through each child of `net`, print every output shape, and return them.

    The pass runs in eval mode without gradients, on the device of the net's parameters;
    the net's training mode is restored afterwards.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape
    ):
        raise ValueError(f"input_shape must be a tuple of positive ints such as (1, 1, 28, 28), got {input_shape!r}")
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    X = torch.rand(*input_shape, device=device, dtype=dtype)
    shapes = []
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for layer in net.children():
                X = layer(X)
                shapes.append(tuple(X.shape))
                print(f"{layer.__class__.__name__:<12} output shape: {tuple(X.shape)}")
    finally:
        net.train(was_training)
    return shapes
