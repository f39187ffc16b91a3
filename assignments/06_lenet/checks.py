"""Hidden tests of assignment 06_lenet: the modern LeNet from its description, evaluate_accuracy, train_epoch,
a question on batch norm's placement, and an experiment: a small net trained on a budget, scored on
held-out test images whose labels never enter the grading kernel."""
from __future__ import annotations

import functools
import math
from typing import Any

import torch

from cnngrader.grading import core
from cnngrader.grading.coverage import covers
from cnngrader.kernel import captured as c
from cnngrader.kernel.probes import describe_layer, probe_net

REFERENCES = {
    "lenet": c.models.lenet,
    "evaluate_accuracy": c.training.evaluate_accuracy,
    "train_epoch": c.training.train_epoch,
}

_TRAINING = core.cnn("evaluate_accuracy", "train_epoch", "train")
FORBIDDEN = {
    "lenet": core.forbid(core.cnn("lenet"), static=["cnnlib.models"]),
    "evaluate_accuracy": core.forbid(_TRAINING),
    "train_epoch": core.forbid(_TRAINING + ["cnnlib.train._epoch"]),
    # it trains on the batches it is given: it loads no data of its own
    "train_small_net": core.forbid(_TRAINING + ["cnnlib.train._epoch"],
                                   static=["cnnlib.data", "cnnlib.load_data"]),
}

ANSWERS = core.answers(__file__)  # the conceptual questions' answers: a secret file, absent in students' copies


@functools.lru_cache(maxsize=2)
def _lenet_reference(secret: int | None) -> tuple:
    """The reference: cnnlib's modern LeNet with its convolutions' biases (if any) set to zero, which is
    the net the task describes (no bias before batch norm). Returns its layout, the parameters a
    student's net takes (in order, without those biases), an input batch and the output on it, in
    training mode (batch norm normalises with the batch's statistics)."""
    with c.fork_rng(devices=[]):
        c.manual_seed(core.seed(1, secret))
        net, seconds = core.timed(REFERENCES["lenet"], "modern")
    params = []
    for m in c.module_modules(net):
        if next(iter(c.module_children(m)), None) is not None:
            continue
        conv = isinstance(m, (c.nn.Conv2d, c.layers.Conv2d))
        for pname, p in m.named_parameters(recurse=False):
            if conv and pname == "bias":
                with c.no_grad():
                    p.zero_()
            else:
                params.append(c.detach(p))
    layout = tuple(_tup(describe_layer(m)) for m in c.module_modules(net)
                   if next(iter(c.module_children(m)), None) is None)
    X = c.randn(3, 1, 28, 28, generator=core.gen(core.seed(13, secret)), dtype=torch.float32)
    with c.no_grad():
        expected, forward_seconds = core.timed(net, X)
    return layout, params, X, expected, seconds + forward_seconds


def _tup(x: Any) -> Any:
    return tuple(_tup(v) for v in x) if isinstance(x, (list, tuple)) else x


def _layer_text(d: tuple) -> str:
    kind = d[0]
    if kind == "conv":
        return f"Conv2d({d[1]} -> {d[2]}, kernel {d[3]}, stride {d[4]}, padding {d[5]})"
    if kind == "avgpool":
        return f"AvgPool2d(kernel {d[1]}, stride {d[2]})"
    if kind == "linear":
        return f"Linear({d[1]} -> {d[2]})"
    return {"sigmoid": "Sigmoid", "flatten": "Flatten"}.get(kind, " ".join(map(str, d)))


@covers("network", ("float32",), meta=True)
def _check_lenet(name: str, runner: Any) -> None:
    core.require_callable(name, runner)
    layout, params, X, expected, seconds = _lenet_reference(runner.secret)
    runner.limit = core.limit_for(seconds)  # a build, or a build and a forward
    budget = sum(math.prod(core.shape(p)) for p in params)
    out = runner.model(name, FORBIDDEN[name], seed=0)
    core.require_clean(name, out["build"], "for lenet()")
    if not out["is_module"]:
        core.fail(f"lenet() returned {out['type']}; expected a torch.nn.Module (an nn.Sequential)")
    got = [_tup(d) for d in out["layers"]]
    for i, want in enumerate(layout):
        if i >= len(got):
            core.fail(f"lenet() has {len(got)} layers; layer {i} should be {_layer_text(want)} "
                      f"(expected {len(layout)} layers)")
        if got[i] != want:
            core.fail(f"lenet() layer {i} is {_layer_text(got[i])}; expected {_layer_text(want)}")
    if len(got) > len(layout):
        core.fail(f"lenet() has {len(got)} layers; the modern LeNet has {len(layout)} "
                  f"(layer {len(layout)} is an extra {_layer_text(got[len(layout)])})")
    shapes = [tuple(s) for s in out["shapes"]]
    count = sum(math.prod(s) for s in shapes)
    if count != budget:
        hint = (" Do the convolutions still have a bias? Batch norm right after them makes it redundant."
                if count > budget else "")
        core.fail(f"lenet() has {count:,} parameters; the budget is {budget:,}.{hint}")
    for i, (s, q) in enumerate(zip(shapes, params)):
        if s != core.shape(q):
            core.fail(f"lenet() parameter {i} has shape {s}; expected {core.shape(q)} "
                      f"(parameters in the order of the layers, weight before bias)")
    for device in core.DEVICES:
        where = (f"for X of shape (3, 1, 28, 28) float32 on {device} in training mode, with the reference's "
                 f"parameters copied in")
        out = runner.model(name, FORBIDDEN[name], seed=0, params=params, X=c.to(X, device=device))
        run = out.get("forward")
        if run is None:
            core.fail(f"lenet() built a different net the second time {where}")
        if run.error is not None:
            core.fail(core.error_reason("lenet()'s forward", run, where))
        reason = core.check_tensor_out("lenet()'s forward", run.value, expected, torch.float32, device, where)
        if reason:
            core.fail(reason + " (is each pooling a 2x2 max pooling with stride 2?)")
    # on meta: a tensor the net keeps outside its parameters and buffers, or makes on the CPU, shows
    run, mixed = runner.module_meta(name, FORBIDDEN[name], [], c.to(X, device=core.META), seed=0)
    where = "for X of shape (3, 1, 28, 28) float32 on the meta device (shapes, no data), the net moved there with .to()"
    reason = core.meta_verdict("lenet()'s forward", run, mixed, where, core.shape(expected))
    if reason:
        core.fail(reason)


@functools.lru_cache(maxsize=4)
def _probe_setup(base: int, batch_sizes: tuple, secret: int | None) -> tuple:
    """The probe net's parameters and a few batches, drawn for this run."""
    s = core.seed(base, secret)
    g = core.gen(s)
    with c.fork_rng(devices=[]):
        c.manual_seed(s)
        net = c.nn.Sequential(c.nn.Flatten(), c.nn.Linear(12, 8), c.nn.ReLU(), c.nn.Linear(8, 3))
    state = {"params": [c.detach(p) for p in c.module_parameters(net)]}
    batches = [(c.randn(n, 1, 3, 4, generator=g, dtype=torch.float32), c.randint(0, 3, (n,), generator=g))
               for n in batch_sizes]
    return state, batches


def _on(batches: list, device: Any) -> list:
    return [(c.to(X, device=device), c.to(y, device=device)) for X, y in batches]


def _meta_fit(name: str, runner: Any, op: str, where: str, **args: Any) -> None:
    """The training function once more with device="meta": the net on the meta device (shapes, no data), the
    batches on the CPU. Every batch must reach the net on `device`, and no operator may meet a meta tensor and a
    CPU one; an error after that (.item() on meta) is inconclusive, the real devices decided the values."""
    where = f"{where} with device='meta' (the net on the meta device, shapes and no data; the batches on the CPU)"
    out = runner.fit(op, name, FORBIDDEN[name], device="meta", **args)
    reason = core.shortcut_reason(name, out["run"])
    if reason:
        core.fail(reason)
    for _, _, dev in out["log"]:
        if dev != "meta":
            core.fail(f"{name} fed the net a batch on {dev} {where}; move each batch to `device` with "
                      f"X.to(device), y.to(device): on a GPU, a batch left on the CPU fails")
    reason = core.meta_verdict(name, out["run"], out["mixed"], where, ()) if out["mixed"] else None
    if reason:
        core.fail(reason)


def _probe_reason(name: str, log: list, training: bool, grad: bool, device: Any, where: str) -> str | None:
    if not log:
        return f"{name} never ran the net {where}"
    for t, gr, dev in log:
        if dev != str(device):
            return (f"{name} fed the net a batch on {dev} {where}; move each batch to `device` ({device}) "
                    f"with X.to(device), y.to(device)")
        if t != training:
            return (f"{name} ran the net in {'training' if t else 'eval'} mode {where}; call "
                    f"net.{'train' if training else 'eval'}() first")
        if gr != grad:
            return (f"{name} ran the net with gradients {'on' if gr else 'off'} {where}"
                    + ("; wrap the loop in `with torch.no_grad():`" if not grad else ""))
    return None


class _PlainSGD:
    """The reference's optimizer: what torch.optim.SGD(params, lr) does without momentum or weight decay
    (p -= lr * p.grad; zero_grad sets the gradients to None), written out because the first
    torch.optim optimizer of a process imports torch._dynamo, which takes seconds (over 5 s on a loaded
    2-core machine) and would land inside the hidden cell's time limit in each fresh grading process."""

    def __init__(self, params: Any, lr: float) -> None:
        self.params, self.lr = list(params), lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        with c.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.lr)


@covers("training", ("float32",), devices=True, meta=True)
def _check_evaluate_accuracy(name: str, runner: Any) -> None:
    core.require_callable(name, runner)
    state, batches = _probe_setup(21, (4, 4, 2), runner.secret)
    # from both modes: "put the net back in the mode it was in" is not "end with net.train()"
    for device, training in [(d, t) for d in core.DEVICES for t in (True, False)]:
        mode = "training" if training else "eval"
        where = f"for 3 batches of sizes 4, 4, 2 with device={str(device)!r}, the net in {mode} mode before the call"
        reference = c.module_to(probe_net(state), device=device)
        expected, seconds = core.timed(REFERENCES["evaluate_accuracy"], reference, _on(batches, device), device)
        runner.limit = core.limit_for(seconds)
        out = runner.fit("evaluate", name, FORBIDDEN[name], state=state, batches=batches, device=str(device),
                         training=training)
        run = out["run"]
        core.require_clean(name, run, where)
        got = run.value
        if not core.is_number(got):
            core.fail(f"{name} returned {core.type_name(got)} {where}; expected a Python float "
                      f"(use .item() to turn a one-element tensor into a number)")
        reason = _probe_reason(name, out["log"], False, False, device, where)
        if reason:
            core.fail(reason)
        if core.off(got, expected, atol=1e-9):
            core.fail(f"{name} returned {got!r}{core.not_finite(got)} {where}; expected {expected!r} "
                      f"(correct predictions / examples)")
        if out["training_after"] is not training:
            left = "training" if out["training_after"] else "eval"
            core.fail(f"{name} left the net in {left} mode {where}; restore the mode it was in at the end "
                      f"(was_training = net.training, then net.train(was_training))")
    _meta_fit(name, runner, "evaluate", "for 3 batches of sizes 4, 4, 2", state=state, batches=batches, training=True)


@covers("training", ("float32",), devices=True, meta=True)
def _check_train_epoch(name: str, runner: Any) -> None:
    core.require_callable(name, runner)
    state, batches = _probe_setup(22, (4, 4, 3), runner.secret)
    for device in core.DEVICES:
        where = f"for 3 batches of sizes 4, 4, 3, nn.CrossEntropyLoss() and SGD(lr=0.5) on {device}"
        reference = c.module_to(probe_net(state), device=device)
        c.module_train(reference, False)
        with c.fork_rng(devices=[] if device.type == "cpu" else [device]):
            c.manual_seed(5)
            optimizer = _PlainSGD(reference.parameters(), lr=0.5)
            (exp_loss, exp_acc), seconds = core.timed(REFERENCES["train_epoch"], reference, _on(batches, device),
                                                      c.nn.CrossEntropyLoss(), optimizer, device)
        runner.limit = core.limit_for(seconds)
        out = runner.fit("train_epoch", name, FORBIDDEN[name], state=state, batches=batches, device=str(device),
                         lr=0.5, seed=5)  # the same dropout masks as the reference
        run = out["run"]
        core.require_clean(name, run, where)
        got = run.value
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(core.is_number(v) for v in got):
            shown = repr(got) if not isinstance(got, core.Opaque) else f"a {got.type_name}"
            core.fail(f"{name} returned {shown} {where}; expected a pair of Python floats (mean loss, accuracy)")
        reason = _probe_reason(name, out["log"], True, True, device, where)
        if reason:
            core.fail(reason)
        for p, q, pname in zip(out["params"], c.module_parameters(reference),
                               ("first weight", "first bias", "second weight", "second bias")):
            if core.check_tensor_out(name, p, c.detach(q), torch.float32, device, where):
                core.fail(f"after {name} the net's {pname} differs from the reference {where}: per batch, "
                          f"call optimizer.zero_grad(), compute the loss, l.backward(), then optimizer.step()")
        loss, acc = got
        if core.off(loss, exp_loss, atol=1e-5 * max(1.0, abs(exp_loss))):
            sizes = [len(y) for _, y in batches]
            shown = f"{loss:.6g}" if core.finite(loss) else f"{loss!r}{core.not_finite(loss)}"
            core.fail(f"{name} returned mean loss {shown} {where}; expected "
                      f"{exp_loss:.6g}: the mean over "
                      f"examples, so weight each batch's mean loss by its size ({sizes}) before dividing by "
                      f"{sum(sizes)}")
        if core.off(acc, exp_acc, atol=1e-9):
            core.fail(f"{name} returned accuracy {acc!r}{core.not_finite(acc)} {where}; expected {exp_acc!r}: "
                      f"the fraction of training "
                      f"examples whose arg-max logit is the label, using the logits computed before each step")
    _meta_fit(name, runner, "train_epoch", "for 3 batches of sizes 4, 4, 3, nn.CrossEntropyLoss() and SGD(lr=0.5)",
              state=state, batches=batches, lr=0.5, seed=5)


# -- the experiment --------------------------------------------------------------------------------
# The budget the task states, enforced here: the parameters of the returned net, and the batches drawn
# from train_iter (and optimizer steps taken): N_TRAIN training images in batches of BATCH, MAX_BATCHES
# in all. Scored on the HELD_OUT test images: FLOOR earns nothing, TARGET all the points, linearly between.
PARAM_BUDGET = 15_000
N_TRAIN, BATCH, MAX_BATCHES = 12_000, 100, 240
HELD_OUT = 5_000
FLOOR, TARGET = 0.70, 0.82
SECONDS = {"train_small_net": 400}  # the hidden cell's time: training takes seconds, more on a loaded machine
# The seed the grader trains every net with: the same in every run, not drawn from the run's secret, so that a
# regrade or a late submission meets the same draw as everyone else's. With a seed per run, the reference
# solution scored between 0.78 and 0.86, that is between 3.5 and 5 points, for the same code.
TRAINING_SEED = 32


def _test_labels() -> Any:
    """The test labels, read here in the trusted process (never sent to the kernel); GradingError where the
    grading machine has no Fashion-MNIST. Only the labels' file is looked up and verified here: the others are
    the kernel's, and checking them too (an MD5 of 47 MB of decompressed images) took a third of a second."""
    from cnnlib.data import find_fashion_mnist, find_file, read_idx, search_dirs

    name = "t10k-labels-idx1-ubyte.gz"
    path = find_file(name, search_dirs(), quiet=True)
    if path is None:
        missing = [n for n, p in find_fashion_mnist().items() if p is None]  # all that is missing, to install
        core.fail("train_small_net could not be graded: Fashion-MNIST is not installed where the grader runs "
                  f"(missing {', '.join(missing)}); the instructor must install it (apt-get install "
                  "dataset-fashion-mnist, or set CNNLIB_DATA) and grade again")
    return c.to(torch.from_numpy(read_idx(path).copy()), dtype=torch.int64)


def _budget_reason(name: str, out: dict) -> str | None:
    """Why the run broke the training budget or the parameter budget, or None."""
    budget = f"the budget is {MAX_BATCHES} batches ({MAX_BATCHES // -(-N_TRAIN // BATCH)} passes over train_iter)"
    if out["over"]:
        return f"{name} asked train_iter for more than {MAX_BATCHES} batches: {budget}; train no longer than that"
    if out["steps"] > MAX_BATCHES:
        return (f"{name} took {out['steps']} optimizer steps: {budget}, one step per batch; take no more "
                f"steps than batches")
    if not out["is_module"]:
        return f"{name} returned {out['type']}; expected the trained net, a torch.nn.Module"
    count = sum(math.prod(s) for s in out["shapes"])
    if count > PARAM_BUDGET:
        return f"{name} returned a net of {count:,} parameters; the budget is {PARAM_BUDGET:,}"
    return None


@covers("experiment", partial=True)
def _check_train_small_net(name: str, runner: Any) -> core.Credit:
    core.require_callable(name, runner)
    labels = _test_labels()
    order = torch.randperm(HELD_OUT, generator=core.gen(core.seed(31, runner.secret)))  # a secret order
    # The budget is counted in steps; this limit only stops a hung call before the cell's own time runs out.
    runner.limit = 0.9 * SECONDS[name]
    out = runner.ask("experiment", name, FORBIDDEN[name], n_train=N_TRAIN, batch_size=BATCH,
                     max_batches=MAX_BATCHES, seed=TRAINING_SEED, held_out=order)
    if not isinstance(out, dict) or out.get("data"):
        core.fail(f"{name} could not be graded: {out.get('data') if isinstance(out, dict) else 'no reply'}")
    where = f"on train_iter ({N_TRAIN:,} training images in batches of {BATCH}, at most {MAX_BATCHES} batches)"
    core.require_clean(name, core.Run.from_dict(out["run"]), where)
    reason = _budget_reason(name, out)
    if reason:
        core.fail(reason)
    done = core.Run.from_dict(out["predict"])
    if done.error is not None:
        core.fail(core.error_reason("the trained net", done, f"on the {HELD_OUT:,} test images, in eval mode"))
    got = out["predicted"]
    if type(got) is not torch.Tensor or core.shape(got) != (HELD_OUT,) or c.dtype_of(got) != torch.uint8:
        core.fail(f"{name}'s net could not be scored: its predictions did not come back whole")
    acc = sum(c.tolist(c.to(got, dtype=torch.int64) == labels[order])) / HELD_OUT
    text = (f"{name}: accuracy {acc:.4f} on {HELD_OUT:,} held-out test images; {FLOOR:.2f} earns no point, "
            f"{TARGET:.2f} all of them")
    if acc <= FLOOR:
        core.fail(text + f". Below the floor: a net that learns reaches {FLOOR:.2f} well within the budget")
    return core.Credit(min(1.0, (acc - FLOOR) / (TARGET - FLOOR)), text)


CHECKS = {
    "lenet": _check_lenet,
    "bn_redundant": core.answer_check("bn_redundant", ANSWERS, (0, 0)),
    "evaluate_accuracy": _check_evaluate_accuracy,
    "train_epoch": _check_train_epoch,
    "train_small_net": _check_train_small_net,
}
