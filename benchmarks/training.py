"""Part 2: the LeNet training loop. cnnlib.train against a bare PyTorch loop (same net, data,
batches and optimizer), and LeNet on cnnlib's layers against LeNet on torch's layers."""
from __future__ import annotations

import contextlib
import copy
import io
import statistics

import torch
from torch import nn

import cnnlib

from .report import Result
from .timing import Timing, paired_ratio, sync, time_call

TRAIN_TARGET = ">= 0.95"  # cnnlib.train throughput / the bare loop's
LAYERS_TARGET = "<= 3"  # LeNet on cnnlib layers: time / LeNet on torch layers
LR = 0.1


def synthetic_batches(n: int, batch_size: int, device: torch.device, seed: int = 0) -> list:
    """Fashion-MNIST-shaped data: n images (1, 28, 28) in [0, 1] with labels 0..9, already on
    `device` and cut into batches, so every loop sees the very same tensors."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return [(X[i : i + batch_size].to(device), y[i : i + batch_size].to(device)) for i in range(0, n, batch_size)]


def bare_epoch(net: nn.Module, batches: list, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """The plainest PyTorch training loop: forward, loss, backward, step; no bookkeeping."""
    loss = nn.CrossEntropyLoss()
    net.train()
    for X, y in batches:
        X, y = X.to(device), y.to(device)
        batch_loss = loss(net(X), y)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()


def cnnlib_epoch_seconds(net, batches, test_batches, device) -> float:
    """One epoch of cnnlib.train; seconds of training as cnnlib.train itself measures them
    (its per-epoch evaluation is not part of the throughput)."""
    with contextlib.redirect_stdout(io.StringIO()):
        history = cnnlib.train(net, batches, test_batches, 1, LR, device, progress=False)
    n = sum(len(y) for _, y in batches)
    return n / history["examples_per_sec"][0]


def run_variant(device: torch.device, variant: str, n: int, batch_size: int, repeats: int) -> list[Result]:
    batches = synthetic_batches(n, batch_size, device)
    test_batches = batches[:1]
    cnnlib.set_seed(0)
    torch_net = cnnlib.lenet(variant, layers="torch").to(device)
    ours_net = cnnlib.lenet(variant, layers="cnnlib").to(device)
    ours_net.load_state_dict(torch_net.state_dict())  # same names and shapes: same starting weights
    nets = {"train": copy.deepcopy(torch_net), "bare": torch_net, "bare_cnnlib_layers": ours_net}
    opts = {k: torch.optim.SGD(v.parameters(), lr=LR) for k, v in nets.items() if k != "train"}

    def once(name: str, part: list) -> float:
        if name == "train":
            return cnnlib_epoch_seconds(nets[name], part, test_batches, device)
        return time_call(lambda: bare_epoch(nets[name], part, opts[name], device), device)

    for name in nets:  # warm-up: allocator, kernels, first-call overheads
        once(name, batches[:2])
    sync(device)
    samples: dict[str, list[float]] = {name: [] for name in nets}
    names = list(nets)
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            samples[name].append(once(name, batches))
    med = {k: statistics.median(v) for k, v in samples.items()}
    eps = {k: n / v for k, v in med.items()}
    T = {k: Timing(v) for k, v in samples.items()}
    # Ratios are medians of per-repeat ratios: the loops of one repeat ran back to back.
    throughput = paired_ratio(T["bare"], T["train"])  # examples/s of cnnlib.train / of the bare loop
    layers = paired_ratio(T["bare_cnnlib_layers"], T["bare"])
    size = f"LeNet {variant}, {n} synthetic 28x28 images, batch {batch_size}"
    detail = {
        "examples_per_sec": eps, "seconds_per_epoch": med, "samples": samples,
        "ratios_of_medians": {"throughput": eps["train"] / eps["bare"],
                              "layers": med["bare_cnnlib_layers"] / med["bare"]},
    }
    dev = str(device)
    return [
        Result("train", f"cnnlib.train / bare loop throughput, {size}", dev, throughput, "x", TRAIN_TARGET, detail),
        Result("train", f"cnnlib layers / torch layers time, {size}", dev, layers, "x", LAYERS_TARGET, detail),
        Result("train", f"cnnlib.train, torch layers, {size}", dev, eps["train"], "ex/s"),
        Result("train", f"bare loop, torch layers, {size}", dev, eps["bare"], "ex/s"),
        Result("train", f"bare loop, cnnlib layers, {size}", dev, eps["bare_cnnlib_layers"], "ex/s"),
    ]


def run(devices: list[torch.device], quick: bool, repeats: int, variants=("classic", "modern"),
        log=print) -> list[Result]:
    results = []
    for device in devices:
        if quick:
            n, batch_size = 64, 16
        else:
            n, batch_size = (60000 if device.type == "cuda" else 256 * 16), 256
        for variant in variants:
            log(f"[train] LeNet {variant} on {device}: {n} examples per epoch, {repeats} epochs per loop")
            results += run_variant(device, variant, n, batch_size, repeats)
    return results
