"""Training and evaluation loops. Every function takes the device as an argument.

Running sums stay on the device during an epoch and are read back once at its end, so the
loop does not wait for the GPU after every batch.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import int_at_least, positive_number


def _check_device(device: object) -> torch.device:
    if not isinstance(device, (torch.device, str)):
        raise TypeError(f"device must be a torch.device or a string such as 'cpu' or 'cuda:0', got {device!r}")
    return torch.device(device)


def _check_net(net: object) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    return net


def evaluate_accuracy(net: nn.Module, data_iter: Iterable, device: torch.device | str) -> float:
    """Fraction of examples in `data_iter` whose arg-max logit is the label.

    Runs in eval mode without gradients on `device`, then restores the net's training mode.
    Batches are (X, y) with X of shape (N, ...) and y of shape (N,).
    """
    net, device = _check_net(net), _check_device(device)
    was_training = net.training
    net.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    try:
        with torch.no_grad():
            for X, y in data_iter:
                X, y = X.to(device), y.to(device)
                correct += (net(X).argmax(dim=1) == y).sum()
                total += y.numel()
    finally:
        net.train(was_training)
    if total == 0:
        raise ValueError("data_iter yielded no examples")
    return correct.item() / total


def train_epoch(
    net: nn.Module,
    train_iter: Iterable,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
) -> tuple[float, float]:
    """One pass over `train_iter` in training mode on `device`.

    `loss` must return the batch's mean loss (nn.CrossEntropyLoss() does).
    Returns: (mean loss per example, training accuracy) over the epoch.
    """
    mean_loss, acc, _ = _epoch(_check_net(net), train_iter, loss, optimizer, _check_device(device))
    return mean_loss, acc


def _epoch(net, train_iter, loss, optimizer, device) -> tuple[float, float, int]:
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    for X, y in train_iter:
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        y_hat = net(X)
        batch_loss = loss(y_hat, y)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        n = y.numel()
        loss_sum.add_(batch_loss.detach(), alpha=n)  # one kernel on a GPU, summed in float64
        correct += (y_hat.detach().argmax(dim=1) == y).sum()
        total += n
    if total == 0:
        raise ValueError("train_iter yielded no examples")
    return loss_sum.item() / total, correct.item() / total, total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    net: nn.Module,
    train_iter: Iterable,
    test_iter: Iterable,
    num_epochs: int,
    lr: float,
    device: torch.device | str,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
) -> dict[str, list[float] | str]:
    """Train `net` with cross-entropy for `num_epochs` on `device`, printing the device used.

    The optimizer defaults to SGD with learning rate `lr`; pass another to use it instead
    (`lr` is then ignored). `progress` shows a tqdm bar over the epochs.

    Returns: a history dict with one entry per epoch in each list:
    'epoch', 'loss', 'train_acc', 'test_acc', 'examples_per_sec' (training throughput,
    evaluation excluded), and 'device' (a string).
    """
    net, device = _check_net(net), _check_device(device)
    int_at_least("num_epochs", num_epochs, 1)
    if optimizer is None:
        positive_number("lr", lr)
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    net.to(device)
    print(f"training on {device}")
    loss = nn.CrossEntropyLoss()
    history: dict = {"epoch": [], "loss": [], "train_acc": [], "test_acc": [], "examples_per_sec": [],
                     "device": str(device)}
    bar = tqdm(range(1, num_epochs + 1), desc="epochs", disable=not progress, file=sys.stdout, leave=False)
    for epoch in bar:
        _sync(device)
        start = time.perf_counter()
        mean_loss, train_acc, n = _epoch(net, train_iter, loss, optimizer, device)
        _sync(device)
        seconds = time.perf_counter() - start
        test_acc = evaluate_accuracy(net, test_iter, device)
        history["epoch"].append(epoch)
        history["loss"].append(mean_loss)
        history["train_acc"].append(train_acc)
        history["test_acc"].append(test_acc)
        history["examples_per_sec"].append(n / seconds)
        bar.set_postfix(loss=f"{mean_loss:.3f}", train_acc=f"{train_acc:.3f}", test_acc=f"{test_acc:.3f}")
    bar.close()
    last = {k: history[k][-1] for k in ("loss", "train_acc", "test_acc", "examples_per_sec")}
    print(
        f"loss {last['loss']:.3f}, train acc {last['train_acc']:.3f}, test acc {last['test_acc']:.3f}, "
        f"{last['examples_per_sec']:.0f} examples/sec on {device}"
    )
    return history


def learn_kernel(
    X: torch.Tensor, Y: torch.Tensor, kernel_size: tuple[int, int], num_steps: int, lr: float
) -> torch.Tensor:
    """Recover a kernel from an input/output pair by gradient descent, as chapter 2 does.

    The kernel starts at zeros; each of the num_steps steps computes the loss
    sum((corr2d(X, K) - Y) ** 2) and moves K by -lr times its gradient (no bias). The
    correlation is computed with the vectorized conv2d, which gives corr2d's values faster.

    Inputs:
    - X: (H, W)
    - Y: (H - kh + 1, W - kw + 1), same dtype and device as X
    - kernel_size: (kh, kw)

    Returns: K of shape (kh, kw) on X's device and dtype, detached from the graph.
    """
    from ._checks import check_same, check_tensor, pair
    from .ops import conv2d

    check_tensor("X", X, (2,), "(H, W)")
    check_tensor("Y", Y, (2,), "(H - kh + 1, W - kw + 1)")
    check_same("X", X, "Y", Y)
    kh, kw = pair("kernel_size", kernel_size, 1)
    if tuple(Y.shape) != (X.shape[0] - kh + 1, X.shape[1] - kw + 1):
        raise ValueError(
            f"Y must have shape {(X.shape[0] - kh + 1, X.shape[1] - kw + 1)} for X {tuple(X.shape)} "
            f"and kernel_size {(kh, kw)}, got {tuple(Y.shape)}"
        )
    int_at_least("num_steps", num_steps, 0)
    positive_number("lr", lr)
    K = X.new_zeros((kh, kw), requires_grad=True)
    for _ in range(num_steps):
        squared_error = ((conv2d(X[None, None], K[None, None])[0, 0] - Y) ** 2).sum()
        (grad,) = torch.autograd.grad(squared_error, K)
        with torch.no_grad():
            K -= lr * grad
    return K.detach()
