"""Hidden tests of assignment 06_lenet: the classic LeNet, evaluate_accuracy and train_epoch."""
from __future__ import annotations

from typing import Any

import torch

from cnngrader.kernel import captured as c
from cnngrader.kernel import core

REFERENCES = {
    "lenet": c.models.lenet,
    "evaluate_accuracy": c.training.evaluate_accuracy,
    "train_epoch": c.training.train_epoch,
}

_TRAINING = core.cnn("evaluate_accuracy", "train_epoch", "train")
FORBIDDEN = {
    "lenet": core.forbid(core.cnn("lenet")),
    "evaluate_accuracy": core.forbid(_TRAINING),
    "train_epoch": core.forbid(_TRAINING + [(c.training, "_epoch")]),
}

# The classic LeNet layer by layer, as _describe_layer writes a layer.
_LENET_LAYOUT = (
    ("conv", 1, 6, (5, 5), (1, 1), (2, 2)), ("sigmoid",), ("avgpool", (2, 2), (2, 2)),
    ("conv", 6, 16, (5, 5), (1, 1), (0, 0)), ("sigmoid",), ("avgpool", (2, 2), (2, 2)),
    ("flatten",), ("linear", 400, 120), ("sigmoid",), ("linear", 120, 84), ("sigmoid",), ("linear", 84, 10),
)
_LENET_PARAMS = 61_706


def _pair(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _describe_layer(m: Any) -> tuple:
    if isinstance(m, (c.nn.Conv2d, c.layers.Conv2d)):
        return ("conv", m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.stride), _pair(m.padding))
    if isinstance(m, c.nn.Sigmoid):
        return ("sigmoid",)
    if isinstance(m, (c.nn.AvgPool2d, c.layers.AvgPool2d)):
        stride = m.kernel_size if m.stride in (None, ()) else m.stride
        return ("avgpool", _pair(m.kernel_size), _pair(stride))
    if isinstance(m, c.nn.Flatten):
        return ("flatten",) if m.start_dim == 1 and m.end_dim == -1 else ("flatten", m.start_dim, m.end_dim)
    if isinstance(m, c.nn.Linear):
        return ("linear", m.in_features, m.out_features)
    return (type(m).__name__,)


def _layer_text(d: tuple) -> str:
    kind = d[0]
    if kind == "conv":
        return f"Conv2d({d[1]} -> {d[2]}, kernel {d[3]}, stride {d[4]}, padding {d[5]})"
    if kind == "avgpool":
        return f"AvgPool2d(kernel {d[1]}, stride {d[2]})"
    if kind == "linear":
        return f"Linear({d[1]} -> {d[2]})"
    return {"sigmoid": "Sigmoid", "flatten": "Flatten"}.get(kind, " ".join(map(str, d)))


def _leaves(net: Any) -> list:
    return [m for m in c.module_modules(net) if next(iter(c.module_children(m)), None) is None]


def _check_lenet(name: str, fn: Any) -> None:
    core.require_callable(name, fn)
    with c.fork_rng(devices=[]):
        c.manual_seed(0)
        run = core.invoke(FORBIDDEN[name], fn)
    core.require_clean(name, run, "for lenet()")
    net = run.value
    if not isinstance(net, c.Module):
        core.fail(f"lenet() returned {type(net).__name__}; expected a torch.nn.Module (an nn.Sequential)")
    got = [_describe_layer(m) for m in _leaves(net)]
    for i, want in enumerate(_LENET_LAYOUT):
        if i >= len(got):
            core.fail(f"lenet() has {len(got)} layers; layer {i} should be {_layer_text(want)} "
                  f"(expected {len(_LENET_LAYOUT)} layers)")
        if got[i] != want:
            core.fail(f"lenet() layer {i} is {_layer_text(got[i])}; expected {_layer_text(want)}")
    if len(got) > len(_LENET_LAYOUT):
        core.fail(f"lenet() has {len(got)} layers; the classic LeNet has {len(_LENET_LAYOUT)} "
              f"(layer {len(_LENET_LAYOUT)} is an extra {_layer_text(got[len(_LENET_LAYOUT)])})")
    params = list(c.module_parameters(net))
    count = sum(c.numel(p) for p in params)
    if count != _LENET_PARAMS:
        core.fail(f"lenet() has {count:,} parameters; the classic LeNet has {_LENET_PARAMS:,}")
    X, expected = _LENET_X, _LENET_EXPECTED
    ref_params = list(c.module_parameters(_LENET_REF))
    for i, (p, q) in enumerate(zip(params, ref_params)):
        if core.shape(p) != core.shape(q):
            core.fail(f"lenet() parameter {i} has shape {core.shape(p)}; expected {core.shape(q)} "
                  f"(parameters in the order of the layers, weight before bias)")
    with c.no_grad():
        for p, q in zip(params, ref_params):
            p.copy_(q)
    for device in core.DEVICES:
        where = f"for X of shape (3, 1, 28, 28) float32 on {device}, with the reference's parameters copied in"
        run = core.invoke(FORBIDDEN[name], lambda: c.module_to(net, device=device)(c.to(X, device=device)))
        if run.error is not None:
            core.fail(core.error_reason("lenet()'s forward", run, where))
        reason = core.check_tensor_out("lenet()'s forward", run.value, expected, torch.float32, device, where)
        if reason:
            core.fail(reason)


class _Probe(torch.nn.Module):
    """Records, for every forward, whether the net was in training mode, grads were on, and X's device."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list = []

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        self.log.append((self.training, c.is_grad_enabled(), c.device_of(X)))
        return X


def _probe_setup(seed: int, batch_sizes: tuple) -> tuple:
    g = core.gen(seed)
    with c.fork_rng(devices=[]):
        c.manual_seed(seed)
        net = c.nn.Sequential(_Probe(), c.nn.Flatten(), c.nn.Linear(12, 8), c.nn.ReLU(), c.nn.Linear(8, 3))
    batches = [(c.randn(n, 1, 3, 4, generator=g, dtype=torch.float32), c.randint(0, 3, (n,), generator=g))
               for n in batch_sizes]
    return net, batches


# Built now, before student code can change torch's defaults (e.g. torch.set_default_dtype).
with c.fork_rng(devices=[]):
    c.manual_seed(1)
    _LENET_REF = REFERENCES["lenet"]("classic").eval()
_LENET_X = c.randn(3, 1, 28, 28, generator=core.gen(13), dtype=torch.float32)
with c.no_grad():
    _LENET_EXPECTED = _LENET_REF(_LENET_X)
_PROBE_EVAL = _probe_setup(21, (4, 4, 2))
_PROBE_TRAIN = _probe_setup(22, (4, 4, 3))


def _probe_reason(name: str, probe: _Probe, training: bool, grad: bool, device: Any, where: str) -> str | None:
    if not probe.log:
        return f"{name} never ran the net {where}"
    for t, gr, dev in probe.log:
        if dev != device:
            return (f"{name} fed the net a batch on {dev} {where}; move each batch to `device` ({device}) "
                    f"with X.to(device), y.to(device)")
        if t != training:
            return (f"{name} ran the net in {'training' if t else 'eval'} mode {where}; call "
                    f"net.{'train' if training else 'eval'}() first")
        if gr != grad:
            return (f"{name} ran the net with gradients {'on' if gr else 'off'} {where}"
                    + ("; wrap the loop in `with torch.no_grad():`" if not grad else ""))
    return None


def _check_evaluate_accuracy(name: str, fn: Any) -> None:
    core.require_callable(name, fn)
    net, batches = _PROBE_EVAL
    for device in core.DEVICES:
        where = f"for 3 batches of sizes 4, 4, 2 with device={str(device)!r}"
        student, reference = c.deepcopy(net), c.deepcopy(net)
        c.module_to(student, device=device)
        c.module_to(reference, device=device)
        c.module_train(student, True)
        expected = REFERENCES["evaluate_accuracy"](reference, c.deepcopy(batches), device)
        run = core.invoke(FORBIDDEN[name], core.call(fn, (student, c.deepcopy(batches), device), {}))
        core.require_clean(name, run, where)
        got = run.value
        if not core.is_number(got):
            core.fail(f"{name} returned {type(got).__name__} {where}; expected a Python float "
                  f"(use .item() to turn a one-element tensor into a number)")
        reason = _probe_reason(name, student[0], False, False, device, where)
        if reason:
            core.fail(reason)
        if abs(got - expected) > 1e-9:
            core.fail(f"{name} returned {got!r} {where}; expected {expected!r} (correct predictions / examples)")
        if not c.module_training(student):
            core.fail(f"{name} left the net in eval mode {where}; it was in training mode before the call, "
                  f"restore that mode at the end")


def _check_train_epoch(name: str, fn: Any) -> None:
    core.require_callable(name, fn)
    net, batches = _PROBE_TRAIN
    for device in core.DEVICES:
        where = f"for 3 batches of sizes 4, 4, 3, nn.CrossEntropyLoss() and SGD(lr=0.5) on {device}"
        student, reference = c.deepcopy(net), c.deepcopy(net)
        c.module_to(student, device=device)
        c.module_to(reference, device=device)
        c.module_train(student, False)  # train_epoch must switch to training mode itself
        with c.fork_rng(devices=[] if device.type == "cpu" else [device]):
            c.manual_seed(5)
            exp_loss, exp_acc = REFERENCES["train_epoch"](reference, c.deepcopy(batches), c.nn.CrossEntropyLoss(),
                                                    c.SGD(reference.parameters(), lr=0.5), device)
        optimizer = c.SGD(student.parameters(), lr=0.5)
        with c.fork_rng(devices=[] if device.type == "cpu" else [device]):
            c.manual_seed(5)  # the same dropout masks as the reference
            run = core.invoke(FORBIDDEN[name], core.call(fn, (student, c.deepcopy(batches), c.nn.CrossEntropyLoss(), optimizer,
                                                    device), {}))
        core.require_clean(name, run, where)
        got = run.value
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(core.is_number(v) for v in got):
            core.fail(f"{name} returned {got!r} {where}; expected a pair of Python floats (mean loss, accuracy)")
        reason = _probe_reason(name, student[0], True, True, device, where)
        if reason:
            core.fail(reason)
        for p, q, pname in zip(c.module_parameters(student), c.module_parameters(reference),
                               ("first weight", "first bias", "second weight", "second bias")):
            if core.check_tensor_out(name, c.detach(p), c.detach(q), torch.float32, device, where):
                core.fail(f"after {name} the net's {pname} differs from the reference {where}: per batch, "
                      f"call optimizer.zero_grad(), compute the loss, l.backward(), then optimizer.step()")
        loss, acc = got
        if abs(loss - exp_loss) > 1e-5 * max(1.0, abs(exp_loss)):
            sizes = [len(y) for _, y in batches]
            core.fail(f"{name} returned mean loss {loss:.6g} {where}; expected {exp_loss:.6g}: the mean over "
                  f"examples, so weight each batch's mean loss by its size ({sizes}) before dividing by "
                  f"{sum(sizes)}")
        if abs(acc - exp_acc) > 1e-9:
            core.fail(f"{name} returned accuracy {acc!r} {where}; expected {exp_acc!r}: the fraction of training "
                  f"examples whose arg-max logit is the label, using the logits computed before each step")



CHECKS = {
    "lenet": _check_lenet,
    "evaluate_accuracy": _check_evaluate_accuracy,
    "train_epoch": _check_train_epoch,
}
