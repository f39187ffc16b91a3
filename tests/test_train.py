"""cnnlib.train: the training loop learns a tiny generated task, reports what it documents, and
the evaluation helpers count correctly and leave the net's mode as they found it."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import DEVICES
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import cnnlib

HISTORY_LISTS = ("epoch", "loss", "train_acc", "test_acc", "examples_per_sec")


def two_blobs(n: int, seed: int) -> TensorDataset:
    """Two separable classes of noisy 1x28x28 images: a bright square top-left (class 0) or
    bottom-right (class 1)."""
    g = torch.Generator().manual_seed(seed)
    X = 0.3 * torch.rand(n, 1, 28, 28, generator=g)
    y = torch.arange(n) % 2
    X[y == 0, :, 4:12, 4:12] += 0.7
    X[y == 1, :, 16:24, 16:24] += 0.7
    return TensorDataset(X, y)


def loaders(n_train=64, n_test=32, batch_size=16):
    train = DataLoader(two_blobs(n_train, 0), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    test = DataLoader(two_blobs(n_test, 1), batch_size=batch_size)
    return train, test


class Recorder(nn.Module):
    """Returns its input as the logits, and records the mode and grad state it was called in."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, X):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return X * self.scale


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layers", ["torch", "cnnlib"])
def test_train_learns_a_tiny_task(layers, device, capsys):
    cnnlib.set_seed(0)
    net = cnnlib.lenet("modern", layers=layers, num_classes=2)
    train_iter, test_iter = loaders()
    history = cnnlib.train(net, train_iter, test_iter, num_epochs=3, lr=0.1, device=device, progress=False)
    out = capsys.readouterr().out.splitlines()

    assert out[0] == f"training on {device}"
    assert out[-1].endswith(f"examples/sec on {device}")
    assert set(history) == {*HISTORY_LISTS, "device"}
    assert history["device"] == str(device)
    for key in HISTORY_LISTS:
        assert len(history[key]) == 3, key
    assert history["epoch"] == [1, 2, 3]
    assert all(0 <= a <= 1 for a in history["train_acc"] + history["test_acc"])
    assert all(math.isfinite(v) and v > 0 for v in history["examples_per_sec"])
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["test_acc"][-1] >= 0.9
    assert next(net.parameters()).device.type == torch.device(device).type


def test_train_with_a_given_optimizer_ignores_lr(capsys):
    cnnlib.set_seed(0)
    net = cnnlib.lenet("classic", num_classes=2)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    history = cnnlib.train(net, *loaders(), num_epochs=2, lr=None, device="cpu", optimizer=optimizer, progress=False)
    assert len(history["loss"]) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_seeded_training_is_repeatable(capsys):
    runs = []
    for _ in range(2):
        cnnlib.set_seed(123)
        net = cnnlib.lenet("modern", num_classes=2)
        history = cnnlib.train(net, *loaders(), num_epochs=2, lr=0.05, device="cpu", progress=False)
        runs.append((history, [p.detach().clone() for p in net.parameters()]))
    (h1, p1), (h2, p2) = runs
    assert h1["loss"] == h2["loss"] and h1["train_acc"] == h2["train_acc"] and h1["test_acc"] == h2["test_acc"]
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_train_shows_progress_on_stdout(capsys):
    cnnlib.set_seed(0)
    cnnlib.train(cnnlib.lenet("classic", num_classes=2), *loaders(32, 16), num_epochs=1, lr=0.1, device="cpu")
    out = capsys.readouterr().out
    assert "training on cpu" in out and "epochs" in out


def test_evaluate_accuracy_matches_a_hand_count():
    # Logits whose arg-max is known: predictions 0, 1, 2, 2, 0 against labels 0, 1, 1, 2, 2 -> 3 of 5.
    logits = torch.tensor([[5.0, 1, 0], [0, 3, 1], [0, 1, 2], [1, 0, 4], [9, 0, 8]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    batches = [(logits[:3], labels[:3]), (logits[3:], labels[3:])]  # uneven batches
    net = Recorder()
    assert cnnlib.evaluate_accuracy(net, batches, "cpu") == pytest.approx(3 / 5)
    assert net.calls == [(False, False), (False, False)]  # eval mode, no gradients
    assert net.training is True  # restored
    net.eval()
    cnnlib.evaluate_accuracy(net, batches, torch.device("cpu"))
    assert net.training is False


def test_evaluate_accuracy_restores_mode_after_an_error():
    net = Recorder()

    def broken():
        yield torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64)
        raise RuntimeError("loader failed")

    with pytest.raises(RuntimeError, match="loader failed"):
        cnnlib.evaluate_accuracy(net, broken(), "cpu")
    assert net.training is True


def test_train_epoch_returns_mean_loss_and_accuracy():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    batches = [(X[:5], y[:5]), (X[5:], y[5:])]  # 5 + 3: a mean of batch means would be wrong
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    net.eval()
    with torch.no_grad():
        logits = net(X)
    expected_loss = nn.functional.cross_entropy(logits, y).item()
    expected_acc = (logits.argmax(1) == y).float().mean().item()

    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # no step: the loss is the starting loss
    loss, acc = cnnlib.train_epoch(net, batches, nn.CrossEntropyLoss(), optimizer, "cpu")
    assert isinstance(loss, float) and isinstance(acc, float)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert acc == pytest.approx(expected_acc)
    assert net.training is True  # train_epoch trains

    # With a real step, the second epoch's loss is lower on this convex problem.
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    first, _ = cnnlib.train_epoch(net, batches, nn.CrossEntropyLoss(), optimizer, "cpu")
    second, _ = cnnlib.train_epoch(net, batches, nn.CrossEntropyLoss(), optimizer, "cpu")
    assert second < first


def test_training_argument_errors():
    net = Recorder()
    train_iter, test_iter = loaders(8, 8)
    with pytest.raises(ValueError, match="num_epochs must be a positive int, got 0"):
        cnnlib.train(net, train_iter, test_iter, num_epochs=0, lr=0.1, device="cpu")
    with pytest.raises(ValueError, match="lr must be a positive number"):
        cnnlib.train(net, train_iter, test_iter, num_epochs=1, lr=0, device="cpu")
    with pytest.raises(TypeError, match="lr must be a positive number"):
        cnnlib.train(net, train_iter, test_iter, num_epochs=1, lr="0.1", device="cpu")
    with pytest.raises(TypeError, match="lr must be a positive number, got True"):
        cnnlib.train(net, train_iter, test_iter, num_epochs=1, lr=True, device="cpu")
    with pytest.raises(TypeError, match="device must be a torch.device or a string"):
        cnnlib.train(net, train_iter, test_iter, num_epochs=1, lr=0.1, device=0)
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        cnnlib.evaluate_accuracy(lambda X: X, test_iter, "cpu")
    with pytest.raises(ValueError, match="data_iter yielded no examples"):
        cnnlib.evaluate_accuracy(net, [], "cpu")
    with pytest.raises(ValueError, match="train_iter yielded no examples"):
        cnnlib.train_epoch(net, [], nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), "cpu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_learn_kernel_recovers_the_edge_kernel(dtype, device):
    X = torch.ones(6, 8, dtype=dtype, device=device)
    X[:, 2:6] = 0
    K_true = torch.tensor([[1.0, -1.0]], dtype=dtype, device=device)
    Y = cnnlib.corr2d(X, K_true)
    K = cnnlib.learn_kernel(X, Y, (1, 2), num_steps=100, lr=0.03)
    assert K.shape == (1, 2) and K.dtype == dtype and K.device == X.device
    assert not K.requires_grad
    assert (K - K_true).abs().max() < 1e-3
    # No steps: the starting point, zeros.
    assert torch.equal(cnnlib.learn_kernel(X, Y, (1, 2), num_steps=0, lr=0.03), torch.zeros_like(K_true))


def test_learn_kernel_recovers_a_random_kernel():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(10, 10, generator=g, dtype=torch.float64)
    K_true = torch.randn(3, 2, generator=g, dtype=torch.float64)
    K = cnnlib.learn_kernel(X, cnnlib.corr2d(X, K_true), (3, 2), num_steps=300, lr=2e-3)
    assert (K - K_true).abs().max() < 1e-6


def test_learn_kernel_argument_errors():
    X, Y = torch.zeros(6, 8), torch.zeros(6, 7)
    with pytest.raises(ValueError, match=r"Y must have shape \(6, 6\) for X \(6, 8\) and kernel_size \(1, 3\)"):
        cnnlib.learn_kernel(X, Y, (1, 3), num_steps=1, lr=0.1)
    with pytest.raises(TypeError, match="X and Y must have the same dtype"):
        cnnlib.learn_kernel(X, Y.double(), (1, 2), num_steps=1, lr=0.1)
    with pytest.raises(ValueError, match="num_steps must be a non-negative int"):
        cnnlib.learn_kernel(X, Y, (1, 2), num_steps=-1, lr=0.1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        cnnlib.learn_kernel(X, Y, (1, 2), num_steps=1, lr=0)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        cnnlib.learn_kernel(X, Y, (0, 2), num_steps=1, lr=0.1)
