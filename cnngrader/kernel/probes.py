"""What the grading kernel does with a student's object, one probe per kind of hidden check.

Each probe takes the object, the Policy and plain inputs (decoded from the trusted process's
request), runs the student's code under guard.invoke, and returns plain outputs: values, the
errors and forbidden uses recorded, never a verdict. The trusted process compares them with its
references. The same probes run in process for an instructor's local check (runners.LocalRunner).
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from cnngrader.kernel import captured as cap
from cnngrader.kernel.guard import Policy, Run, invoke
from cnngrader.kernel.serialize import encode_untrusted


class _Missing:
    """What a name that the notebook never defined is bound to."""


MISSING = _Missing()


def run_dict(run: Run) -> dict:
    """A Run as plain data: the value as encoded while the guard was armed (else as it is), the
    error as its type's name, message and whether it is a NotImplementedError (the unattempted stub)."""
    error = None
    if run.error is not None:
        e = run.error
        error = {"type": type(e).__name__, "message": run.message,
                 "not_implemented": isinstance(e, NotImplementedError)}
    value = run.plain if run.plain is not None else run.value
    out = {"value": value, "error": error, "where": run.where, "shortcuts": list(run.shortcuts),
           "warned": list(run.warned), "tampered": run.tampered}
    if run.counts is not None:
        out["counts"] = run.counts
    return out


@contextlib.contextmanager
def full_float32():
    """No TF32 on GPUs while grading: cuDNN convolutions would otherwise round float32 to ~1e-3."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def seeded(seed: int | None, devices: list | tuple = ()):
    """Torch's global RNG at `seed` for the block (and as before afterwards); no-op for None."""
    if seed is None:
        yield
        return
    with cap.fork_rng(devices=list(devices)):
        cap.manual_seed(seed)
        yield


def describe(obj: Any, policy: Policy) -> dict:
    """What the name is bound to: a function, a class, something else (and its type), or nothing."""
    if obj is MISSING:
        return {"kind": "missing", "type": ""}
    kind = "class" if isinstance(obj, type) else "function" if callable(obj) else "other"
    return {"kind": kind, "type": type(obj).__name__}


def value(obj: Any, policy: Policy) -> dict:
    """The value a name is bound to, for a conceptual question's answer (plain data crosses as
    itself, anything else as its type's name); nothing of the student's code runs."""
    if obj is MISSING:
        return {"kind": "missing", "value": None}
    return {"kind": "value", "value": obj}


def call(obj: Any, policy: Policy, args: list, kwargs: dict, seed: int | None = None, count: bool = False) -> dict:
    """obj(*args, **kwargs) once; with count, also the operators it dispatched and the calls it made."""
    if count is True:
        import torch._dynamo  # noqa: F401 - what a dispatch mode's first use imports, outside the guard (kernels have it)
    with full_float32(), seeded(seed):
        return run_dict(invoke(policy, lambda: obj(*args, **kwargs), encode_untrusted, count=count is True))


class _DeviceMix(TorchFunctionMode):
    """Records the first torch function or Tensor method (Y[i, j] = v included) that met a meta tensor and a
    tensor on another device: a tensor made without the input's device. A CPU scalar of zero dimensions is
    accepted by elementwise operations on every device, not by those that join tensors (stack, cat), nor
    when it requires a gradient (an element of a parameter left on the CPU: its gradient would stay there)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.found:
            joins = getattr(func, "__name__", "") in _JOINS
            kinds = {cap.device_of(t).type for t in _tensors_in([args, kwargs])
                     if joins or cap.requires_grad_of(t) or not (cap.dim(t) == 0 and cap.device_of(t).type == "cpu")}
            if "meta" in kinds and len(kinds) > 1:
                self.found = [getattr(func, "__name__", "an operation"), sorted(kinds - {"meta"})[0]]
        return func(*args, **kwargs)


_JOINS = {"stack", "cat", "concat", "concatenate", "hstack", "vstack", "dstack", "column_stack", "row_stack"}


def _tensors_in(value: Any, depth: int = 0) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if depth < 4 and isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v, depth + 1)]
    if depth < 4 and isinstance(value, dict):
        return [t for v in value.values() for t in _tensors_in(v, depth + 1)]
    return []


def call_meta(obj: Any, policy: Policy, args: list, kwargs: dict) -> dict:
    """obj(*args, **kwargs) once, with its tensor arguments on the meta device (shapes, no data); also
    reports `mixed`: [operator, other device] where a meta tensor met a tensor on another device."""
    # what the first meta operator imports, imported outside the guard (kernels already have it)
    import torch._dynamo  # noqa: F401 (imported for its side effect)

    mode = _DeviceMix()

    def thunk():
        with mode:
            return obj(*args, **kwargs)

    out = run_dict(invoke(policy, thunk, encode_untrusted))
    out["mixed"] = list(mode.found)
    return out


def module_meta(obj: Any, policy: Policy, ctor_args: list, X: torch.Tensor, seed: int | None = None) -> dict:
    """Build obj(*ctor_args) (at `seed`), move it to X's device, the meta device, in float32, and run
    forward(X) there: a tensor the module keeps outside its parameters and buffers, or makes in forward
    without X's device, stays on the CPU and shows in `mixed`, as in call_meta."""
    import torch._dynamo  # as in call_meta

    mode = _DeviceMix()

    def forward():
        with seeded(seed):
            module = obj(*ctor_args)
        cap.module_to(module, device=cap.device_of(X), dtype=torch.float32)
        with mode:
            return module(X)

    out = run_dict(invoke(policy, forward, encode_untrusted))
    out["mixed"] = list(mode.found)
    return out


def layer(obj: Any, policy: Policy, ctor_args: list, params: dict, X: torch.Tensor, G: torch.Tensor) -> dict:
    """Build obj(*ctor_args) on X's device and dtype, load `params`, run forward(X), then
    backward of sum(Y * G); report Y, whether it carries a gradient, and each parameter's grad."""
    state: dict = {}

    def forward():
        module = obj(*ctor_args)
        cap.module_to(module, device=cap.device_of(X), dtype=cap.dtype_of(X))
        with cap.no_grad():
            for pname, value in params.items():
                getattr(module, pname).copy_(value)
        state["module"] = module
        return module(X)

    with full_float32():
        fwd = invoke(policy, forward, encode_untrusted)
        out = {"forward": run_dict(fwd), "requires_grad": False, "backward": None, "grads": {}}
        Y = fwd.value
        if fwd.error is not None or type(Y) not in (cap.Tensor, cap.Parameter):
            return out
        out["requires_grad"] = bool(cap.requires_grad_of(Y))
        if not out["requires_grad"]:
            return out
        # (Y * G).sum() rather than Y.backward(G): the latter imports half of torch on first use.
        back = invoke(policy, lambda: cap.backward((Y * G).sum()))
        out["backward"] = run_dict(back)
        module = state["module"]
        for pname in params:
            param = getattr(module, pname, None)
            out["grads"][pname] = cap.grad_of(param) if type(param) in (cap.Tensor, cap.Parameter) else None
    return out


# -- models ---------------------------------------------------------------------------------
def _pair(v: Any) -> list:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _padding(m: Any, kernel: list, stride: list) -> list:
    """The zeros a convolution adds on each side, whatever its spelling: padding="same" (stride 1,
    an odd reach) is (k - 1) // 2 per side and "valid" is 0, as F.conv2d pads them."""
    padding = m.padding
    if not isinstance(padding, str):
        return _pair(padding)
    if padding == "valid":
        return [0, 0]
    dilation = _pair(getattr(m, "dilation", 1))
    reach = [d * (k - 1) if isinstance(d, int) and isinstance(k, int) else None for d, k in zip(dilation, kernel)]
    if padding == "same" and stride == [1, 1] and all(r is not None and r % 2 == 0 for r in reach):
        return [r // 2 for r in reach]
    return [padding, padding]  # asymmetric zeros: no integer padding describes them


def describe_layer(m: Any) -> list:
    """A leaf module as a list: ["conv", in, out, kernel, stride, padding], ["sigmoid"], ...;
    anything unknown as [its class name]."""
    if isinstance(m, (cap.nn.Conv2d, cap.layers.Conv2d)):
        kernel, stride = _pair(m.kernel_size), _pair(m.stride)
        return ["conv", m.in_channels, m.out_channels, kernel, stride, _padding(m, kernel, stride)]
    if isinstance(m, cap.nn.Sigmoid):
        return ["sigmoid"]
    if isinstance(m, (cap.nn.AvgPool2d, cap.layers.AvgPool2d)):
        stride = m.kernel_size if m.stride in (None, ()) else m.stride
        return ["avgpool", _pair(m.kernel_size), _pair(stride)]
    if isinstance(m, cap.nn.Flatten):
        return ["flatten"] if m.start_dim == 1 and m.end_dim == -1 else ["flatten", m.start_dim, m.end_dim]
    if isinstance(m, cap.nn.Linear):
        return ["linear", m.in_features, m.out_features]
    return [type(m).__name__]


def _leaves(net: Any) -> list:
    return [m for m in cap.module_modules(net) if next(iter(cap.module_children(m)), None) is None]


def model(obj: Any, policy: Policy, seed: int, params: list | None = None, X: torch.Tensor | None = None) -> dict:
    """Build obj() at `seed` and describe it; with params and X, also copy the params in (in
    order) and run the net on X, on X's device."""
    with full_float32(), seeded(seed):
        built = invoke(policy, obj)
    out = {"build": run_dict(built), "is_module": isinstance(built.value, cap.Module),
           "type": type(built.value).__name__, "layers": [], "shapes": []}
    out["build"]["value"] = None  # the net itself does not cross
    net = built.value
    if built.error is not None or not out["is_module"]:
        return out
    out["layers"] = [describe_layer(m) for m in _leaves(net)]
    mine = list(cap.module_parameters(net))
    out["shapes"] = [list(cap.size(p)) for p in mine]
    if params is not None and X is not None:
        if [list(cap.size(p)) for p in params] != out["shapes"]:
            return out
        with cap.no_grad():
            for p, q in zip(mine, params):
                p.copy_(q)
        with full_float32():
            forward = invoke(policy, lambda: cap.module_to(net, device=cap.device_of(X))(X), encode_untrusted)
            out["forward"] = run_dict(forward)
    return out


# -- training functions ----------------------------------------------------------------------
def _probe(record: list) -> torch.nn.Module:
    """A module that records, for every forward, whether the net was in training mode, grads were
    on, and X's device. The record is held in a closure, not on the module, so that code given the
    net cannot rewrite it through net[0]."""
    note = record.append

    class _Probe(torch.nn.Module):
        def forward(self, X: torch.Tensor) -> torch.Tensor:
            note((cap.module_training(self), cap.is_grad_enabled(), str(cap.device_of(X))))
            return X

    return _Probe()


def probe_net(state: dict, record: list | None = None) -> torch.nn.Module:
    """The small net the training checks feed: a probe (writing to `record`), then 12 -> 8 -> 3 with a ReLU."""
    net = cap.nn.Sequential(_probe([] if record is None else record), cap.nn.Flatten(), cap.nn.Linear(12, 8),
                          cap.nn.ReLU(), cap.nn.Linear(8, 3))
    with cap.no_grad():
        for p, value in zip(cap.module_parameters(net), state["params"]):
            p.copy_(value)
    return net


def _log(record: list) -> list:
    """The probe's record as plain lists, copied before anything else can see it."""
    return [list(entry) for entry in record]


def _batches(batches: list) -> list:
    return [(X, y) for X, y in batches]


def evaluate(obj: Any, policy: Policy, state: dict, batches: list, device: str, training: bool = True) -> dict:
    """obj(net, batches, device) on a probe net that starts in training mode (or eval mode: training=False)."""
    dev = cap.device_type(device)
    record: list = []
    net = cap.module_to(probe_net(state, record), device=dev)
    cap.module_train(net, training is True)
    mode = _meta_mode(dev)
    run = invoke(policy, lambda: _within(mode, lambda: obj(net, _batches(batches), dev)), encode_untrusted)
    return {"run": run_dict(run), "log": _log(record), "training_after": cap.module_training(net),
            "mixed": _found(mode)}


def train_epoch(obj: Any, policy: Policy, state: dict, batches: list, device: str, lr: float, seed: int) -> dict:
    """obj(net, batches, CrossEntropyLoss(), SGD(lr), device) on a probe net that starts in eval
    mode; reports the value, what the probe saw and the parameters afterwards."""
    dev = cap.device_type(device)
    record: list = []
    net = cap.module_to(probe_net(state, record), device=dev)
    cap.module_train(net, False)  # train_epoch must switch to training mode itself
    optimizer = cap.SGD(net.parameters(), lr=lr)
    mode = _meta_mode(dev)
    with seeded(seed, [] if dev.type in ("cpu", "meta") else [dev]):
        run = invoke(policy, lambda: _within(mode, lambda: obj(net, _batches(batches), cap.nn.CrossEntropyLoss(),
                                                                  optimizer, dev)), encode_untrusted)
    params = [] if dev.type == "meta" else [cap.detach(p) for p in cap.module_parameters(net)]
    return {"run": run_dict(run), "log": _log(record), "params": params, "mixed": _found(mode)}


# With device="meta" (the batches stay on the CPU, the net is on meta), a training function shows the
# device mistakes a CPU-only grader cannot see: a batch not moved to `device`, a tensor made on the CPU.
def _meta_mode(dev: torch.device) -> _DeviceMix | None:
    if dev.type != "meta":
        return None
    import torch._dynamo  # noqa: F401 - as in call_meta
    return _DeviceMix()


def _within(mode: _DeviceMix | None, fn: Any) -> Any:
    if mode is None:
        return fn()
    with mode:
        return fn()


def _found(mode: _DeviceMix | None) -> list:
    return [] if mode is None else list(mode.found)


PROBES = {"describe": describe, "value": value, "call": call, "call_meta": call_meta, "layer": layer, "model": model,
          "module_meta": module_meta,
          "evaluate": evaluate,
          "train_epoch": train_epoch}


# -- the experiment: a net trained on a budget, scored on images whose labels stay outside -----------
import torch.optim.optimizer as _optimizer  # noqa: E402 (the experiment's own section, which alone needs it)

import cnnlib.data as _data  # noqa: E402 - bound at import, before any student code

_find_file, _search_dirs, _read_idx = _data.find_file, _data.search_dirs, _data.read_idx
_from_numpy, _argmax, _cat, _randperm = torch.from_numpy, torch.argmax, torch.cat, torch.randperm
_get_threads, _set_threads = torch.get_num_threads, torch.set_num_threads
_STEP_HOOK = _optimizer.register_optimizer_step_post_hook
_FILES: dict = {}
_PREDICT_BATCH = 250  # a first layer's output for 250 images stays in cache: on one thread, twice as fast as 1,000


def _fashion_file(name: str, count: int) -> Any:
    """The first `count` items of a Fashion-MNIST file as a uint8 array (decompressed no further), read once
    per kernel; None where it is not found. In the grading sandbox the test labels are not there at all: the
    trusted process holds them."""
    if (name, count) not in _FILES:
        path = _find_file(name, _search_dirs(), quiet=True)
        _FILES[name, count] = None if path is None else _read_idx(path, count)
    return _FILES[name, count]


class _Budget:
    """The batches a training function may draw: `passes` shuffled passes over (X, y) in batches of
    `batch_size`, counted where the function cannot reach (`record`). Asking for a batch past the budget
    is recorded as such and ends the pass."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int, max_batches: int, seed: int,
                 record: dict) -> None:
        n = cap.size(X)[0]
        count = {"drawn": 0, "over": False}

        def batches():
            perm = _randperm(n, generator=cap.Generator().manual_seed(seed + record["passes"]))
            record["passes"] += 1
            for start in range(0, n, batch_size):
                if count["drawn"] >= max_batches:
                    count["over"] = record["over"] = True
                    return
                count["drawn"] += 1
                record["drawn"] = count["drawn"]
                idx = perm[start:start + batch_size]
                yield X[idx], y[idx]

        self._batches, self._len = batches, -(-n // batch_size)

    def __iter__(self):
        return self._batches()

    def __len__(self) -> int:
        return self._len


def experiment(obj: Any, policy: Policy, n_train: int, batch_size: int, max_batches: int, seed: int,
               held_out: torch.Tensor) -> dict:
    """obj(train_iter) trains a net of its own on the first n_train training images, drawing at most
    max_batches batches; the net it returns then classifies the test images at `held_out` (indices),
    in eval mode without gradients. Reports what was drawn, the optimizer steps taken, the net's parameter
    shapes and its predicted classes (uint8), never a label: there are none here."""
    images = [_fashion_file("train-images-idx3-ubyte.gz", n_train),
              _fashion_file("t10k-images-idx3-ubyte.gz", max(cap.tolist(held_out), default=-1) + 1)]
    labels = _fashion_file("train-labels-idx1-ubyte.gz", n_train)
    if any(v is None for v in (*images, labels)):
        return {"data": "Fashion-MNIST (training images and labels, test images) is not found in the grading kernel"}
    X = cap.to(_from_numpy(images[0].copy()), dtype=torch.float32).div_(255.0).unsqueeze_(1)  # (n, 1, 28, 28)
    y = cap.to(_from_numpy(labels.copy()), dtype=torch.int64)
    record = {"drawn": 0, "over": False, "passes": 0}
    steps = []
    handle, threads = _STEP_HOOK(lambda *_: steps.append(1)), _get_threads()
    _set_threads(1)  # one core, whatever the grader's jobs: the same sums, so the same net, on every run
    try:
        with seeded(seed):
            run = invoke(policy, lambda: obj(_Budget(X, y, batch_size, max_batches, seed, record)))
        return _scored(run, policy, images[1], held_out, record, len(steps))
    finally:
        handle.remove()
        _set_threads(threads)


def _scored(run: Run, policy: Policy, images: Any, held_out: torch.Tensor, record: dict, steps: int) -> dict:
    """What the experiment sends back: the budget used, the net's parameter shapes and its predictions."""
    out = {"data": "", "run": run_dict(run), "drawn": record["drawn"], "over": record["over"],
           "steps": steps, "is_module": isinstance(run.value, cap.Module), "type": type(run.value).__name__,
           "shapes": [], "predicted": None, "predict": None}
    out["run"]["value"] = None  # the net itself does not cross
    net = run.value
    if run.error is not None or not out["is_module"]:
        return out
    out["shapes"] = [list(cap.size(p)) for p in cap.module_parameters(net)]
    test = cap.to(_from_numpy(images[cap.tolist(held_out)]), dtype=torch.float32).div_(255.0).unsqueeze_(1)
    cap.module_train(net, False)

    def predict():
        found = []
        with cap.no_grad():
            for start in range(0, cap.size(test)[0], _PREDICT_BATCH):
                logits = net(test[start:start + _PREDICT_BATCH])
                if type(logits) is not cap.Tensor or cap.dim(logits) != 2 or cap.size(logits)[1] != 10:
                    raise TypeError(f"the net returned {type(logits).__name__} "
                                    f"{tuple(cap.size(logits)) if isinstance(logits, cap.Tensor) else ''}; "
                                    f"expected logits of shape (N, 10)")
                found.append(cap.to(_argmax(cap.detach(logits), dim=1), dtype=torch.uint8))
        return _cat(found)

    with full_float32():
        done = invoke(policy, predict)
    out["predict"] = run_dict(done)
    out["predict"]["value"] = None
    if done.error is None:
        out["predicted"] = done.value
    return out


PROBES["experiment"] = experiment
