"""Hidden tests of assignment 02_cross_correlation: corr2d (without a loop over the output), a Conv2D layer with
several kernels, convolve2d, learn_kernel, a question on the flip, the backward pass of a one-channel
convolution layer (dX, dK, db against autograd through cnnlib.conv2d) and a question on its flip."""
from __future__ import annotations

import functools
import math
import types
from typing import Any, Mapping

import torch

from cnngrader.grading import behaviour, core
from cnngrader.grading.coverage import covers
from cnngrader.kernel import captured as c

REFERENCES = {
    "corr2d": c.ops.corr2d,
    "convolve2d": c.ops.convolve2d,
    "learn_kernel": c.training.learn_kernel,
}

# Every convolution route, cnnlib's, torch's, NumPy's and SciPy's (corr2d's text also forbids im2col);
# learn_kernel may not solve the least-squares problem.
_NO_CONV = core.forbid(core.cnn(*core.CONV_OPS) + core.CONV, core.CONV_C, core.CONV_ATEN,
                       core.LOW_LEVEL + core.NUMPY_CONV)
FORBIDDEN = {
    "corr2d": core.forbid(core.cnn(*core.CONV_OPS) + core.CONV + core.IM2COL, core.CONV_C + core.IM2COL_C,
                          core.CONV_ATEN + core.IM2COL_ATEN, core.LOW_LEVEL + core.NUMPY_CONV),
    "Conv2D": _NO_CONV,
    "convolve2d": _NO_CONV,
    "learn_kernel": core.forbid(core.cnn("learn_kernel") + core.SOLVE, (), core.SOLVE_ATEN, ["numpy.linalg", "scipy"]),
}

# Shapes (H, W, kh, kw): 1x1 kernels, kernels as large as the input, non-square everything.
_CORR_SPECS = [
    (1, 1, 1, 1), (2, 2, 2, 2), (3, 3, 1, 1), (3, 4, 2, 2), (4, 3, 2, 1), (2, 5, 1, 3), (4, 6, 4, 6),
    (5, 7, 3, 2), (6, 5, 2, 4), (7, 8, 3, 3), (8, 6, 5, 3), (5, 5, 5, 1),
]


def _build_xk(spec, g, integer):
    H, W, kh, kw = spec
    X, K = core.data((H, W), g, integer), core.data((kh, kw), g, integer)
    return (X, K), {}, f"X {(H, W)} and K {(kh, kw)}", (("X", X), ("K", K))


CASES = {
    "corr2d": core.tensor_cases(REFERENCES["corr2d"], _CORR_SPECS, _build_xk, 2),
    "convolve2d": core.tensor_cases(REFERENCES["convolve2d"], _CORR_SPECS[::2] + [(3, 4, 2, 3)], _build_xk, 3),
}


def _conv2d_layer_cases(secret: int | None) -> list[tuple]:
    """(case, out_channels, weight, bias, G, dL/dW, dL/db) for L = sum(Y * G), with 1 to 3 kernels:
    map o is corr2d(X, W[o]) + b[o], dL/dW[o] = corr2d(X, G[o]) and dL/db[o] = sum(G[o])."""
    out = []
    corr = REFERENCES["corr2d"]
    for k, case in enumerate(CASES["corr2d"](secret)[::2]):
        X, K0 = case.args
        n = k % 3 + 1
        g = core.gen(core.seed(100 + k, secret))
        W = c.stack([K0] + [core.data(core.shape(K0), g, k % 2 == 0) for _ in range(n - 1)])
        b = c.tensor([float((k + o) % 3 - 1) / 2 for o in range(n)], dtype=c.F64)  # biases -0.5, 0 or 0.5
        Y = c.stack([corr(X, W[o]) + b[o] for o in range(n)])
        G = core.data(core.shape(Y), g, True)
        dW = c.stack([corr(X, G[o]) for o in range(n)])
        db = G.sum(dim=(1, 2))
        desc = f"X {core.shape(X)} and {n} kernel{'s' if n > 1 else ''} of shape {core.shape(K0)}"
        out.append((case._replace(expected=Y, desc=desc, show=(("X", X), ("weight", W), ("bias", b))),
                    n, W, b, G, dW, db))
    return out


@covers("layer", ("float32", "float64"), devices=True, meta=True)
def _check_conv2d_layer(name: str, runner: Any) -> None:
    core.require_callable(name, runner)
    forbidden = FORBIDDEN["Conv2D"]
    cases, seconds = core.timed(_conv2d_layer_cases, runner.secret)  # every case's forward and gradients
    runner.limit = core.limit_for(seconds)
    combos = [(device, dtype, *case) for device in core.DEVICES for dtype in core.DTYPES for case in cases]
    batch = []
    for device, dtype, case, n, W, b, G, *_ in combos:
        to = functools.partial(c.to, device=device, dtype=dtype)
        batch.append({"ctor_args": [core.shape(W)[1:], n], "params": {"weight": to(W), "bias": to(b)},
                      "X": to(case.args[0]), "G": to(G)})
    outs, gone = runner.layer_batch(name, forbidden, batch)  # one round trip; in order, up to a call that hung
    for (device, dtype, case, n, W, b, G, dW, db), out in zip(combos, outs):
        ks = core.shape(W)[1:]
        where = core.combo_where(case, device, dtype) + f", Conv2D({ks}, out_channels={n})"
        run = out["forward"]
        core.require_clean(name, run, where, label=f"{name}")
        reason = core.check_tensor_out(f"{name}.forward", run.value, case.expected, dtype, device, where)
        if reason:
            got = run.value if type(run.value) is c.Tensor and c.numel(run.value) <= 200 else None
            core.fail(reason + core.example(case, case.expected, got))
        if not out["requires_grad"]:
            core.fail(f"{name}.forward returned a tensor without a gradient {where}: build the output from "
                      f"self.weight and self.bias with tensor operations so autograd can train the layer "
                      f"(no .item(), .detach() or torch.tensor(...) of results)")
        grad_run = out["backward"]
        core.require_clean(name, grad_run, where, label=f"backward through {name}.forward")
        for pname, expected in (("weight", dW), ("bias", db)):
            grad = out["grads"].get(pname)
            if grad is None:
                core.fail(f"{name}.forward does not use self.{pname} {where}: its gradient is None")
            if core.check_tensor_out(f"{name}", grad, expected, dtype, device, where):
                core.fail(f"the gradient of {name}'s {pname} is wrong {where}; does forward compute "
                          f"map o as corr2d(X, self.weight[o]) + self.bias[o]?")
    if gone:  # every call that returned was right, and one did not return
        core.fail(gone)
    for case, n, W, *_ in (cases[0], cases[-1]):  # on meta: a tensor made or kept on the CPU shows
        ks = core.shape(W)[1:]
        where = f"for {case.desc}, Conv2D({ks}, out_channels={n}), float32 on the meta device (shapes, no data)"
        X = c.to(case.args[0], device=core.META, dtype=torch.float32)
        run, mixed = runner.module_meta(name, forbidden, [ks, n], X)
        reason = core.meta_verdict(f"{name}.forward", run, mixed, where, core.shape(case.expected))
        if reason:
            core.fail(reason)


@functools.lru_cache(maxsize=2)
def _learn_problem(secret: int | None) -> dict:
    g = core.gen(core.seed(12, secret))
    X = core.data((6, 6), g, False)
    K = core.data((2, 2), g, True) / 2
    Y = REFERENCES["corr2d"](X, K)
    A = c.stack([X[a:a + 5, b:b + 5].flatten() for a in range(2) for b in range(2)], dim=1)  # (L, kh*kw)
    ev = c.eigvalsh(2 * A.T @ A).tolist()  # the Hessian's eigenvalues for the summed squared error
    lr = 1.8 / (ev[0] + ev[-1])
    rate = max(abs(1 - lr * ev[0]), abs(1 - lr * ev[-1]))
    steps = int(math.ceil(math.log(1e-12) / math.log(rate)))
    _, seconds = core.timed(REFERENCES["learn_kernel"], X, Y, (2, 2), steps, lr)
    return {"X": X, "Y": Y, "kernel_size": (2, 2), "lr": lr, "steps": steps, "seconds": seconds}


# The fit must reproduce Y to this relative error (norm of residual / norm of Y), per dtype.
LEARN_TOLERANCES: Mapping[torch.dtype, float] = types.MappingProxyType({torch.float32: 1e-4, torch.float64: 1e-8})


def _residual(X: torch.Tensor, K: torch.Tensor, Y: torch.Tensor) -> float:
    K64 = c.detach(c.to(K, device=c.CPU, dtype=c.F64))
    r = core.flat(c.tolist(REFERENCES["corr2d"](X, K64) - Y))
    y = core.flat(c.tolist(Y))
    return c.sqrt(c.fsum(v * v for v in r)) / c.sqrt(c.fsum(v * v for v in y))


@covers("training", ("float32", "float64"), devices=True, meta=True)
def _check_learn_kernel(name: str, runner: Any) -> None:
    core.require_callable(name, runner)
    P = _learn_problem(runner.secret)
    X, Y, ks = P["X"], P["Y"], P["kernel_size"]
    desc = (f"X {core.shape(X)}, Y {core.shape(Y)}, kernel_size={ks}, num_steps={P['steps']}, lr={P['lr']:.4g}")
    runner.limit = core.limit_for(P["seconds"])
    for device in core.DEVICES:
        for dtype in core.DTYPES:
            where = f"for {desc} on {core.dev(device)} {core.dt(dtype)}"
            Xd, Yd = c.to(X, device=device, dtype=dtype), c.to(Y, device=device, dtype=dtype)
            run = runner.call(name, FORBIDDEN[name], [Xd, Yd, ks, P["steps"], P["lr"]], {}, seed=0)
            core.require_clean(name, run, where,
                               hint=" Learn the kernel by gradient descent, not by solving the equations.")
            K = run.value
            if type(K) is not c.Tensor and type(K) is not c.Parameter:
                core.fail(f"{name} returned {core.type_name(K)} {where}; expected a torch.Tensor of shape {ks}")
            if core.shape(K) != ks:
                core.fail(f"{name} returned shape {core.shape(K)} {where}; expected {ks}")
            if c.dtype_of(K) != dtype:
                core.fail(f"{name} returned dtype {core.dt(c.dtype_of(K))} {where}; "
                          f"expected {core.dt(dtype)}, X's dtype")
            if c.device_of(K) != device:
                core.fail(f"{name} returned a kernel on {c.device_of(K)} {where}; expected it on {device}, X's device")
            values = core.flat(c.tolist(c.detach(c.to(K, device=c.CPU, dtype=c.F64))))
            bad = next((v for v in values if not core.finite(v)), None)
            if bad is not None:
                core.fail(f"{name} returned a kernel holding {bad!r}{core.not_finite(bad)} {where}: the steps "
                          f"diverged or divided by zero. Each step should subtract lr times the gradient of the "
                          f"summed squared error.")
            err = _residual(X, K, Y)
            if not (err <= LEARN_TOLERANCES[dtype]):
                core.fail(f"{name} did not fit the data {where}: corr2d(X, K) is off by {err:.3g} relative to Y "
                      f"(must be below {LEARN_TOLERANCES[dtype]:g}). Each step should subtract lr times the "
                      f"gradient of the summed (not averaged) squared error; if you use your corr2d, make sure "
                      f"it passes its own tests first.")
    meta = [c.to(t, device=core.META, dtype=torch.float32) for t in (X, Y)]
    run, mixed = runner.call_meta(name, FORBIDDEN[name], [*meta, ks, 2, P["lr"]], {})
    reason = core.meta_verdict(name, run, mixed, f"for X {core.shape(X)}, Y {core.shape(Y)}, kernel_size={ks}, "
                               f"num_steps=2, float32 on the meta device (shapes and dtypes, no data)", ks)
    if reason:
        core.fail(reason)
    # It must learn: a single small step cannot fit Y (a closed-form solution ignores num_steps and lr).
    run = runner.call(name, FORBIDDEN[name], [X, Y, ks, 1, P["lr"] / 10], {}, seed=0)
    if run.error is not None:
        core.fail(core.error_reason(name, run, "for num_steps=1"))
    if type(run.value) is c.Tensor and core.shape(run.value) == ks and _residual(X, run.value, Y) < 0.3:
        core.fail(f"{name} fitted Y after a single step with a tenth of the learning rate: it must take num_steps "
              f"gradient steps of size lr, not solve for the kernel directly.")


ANSWERS = core.answers(__file__)  # the conceptual question's answer: a secret file, absent in students' copies

def _corr2d_sizes(runner: Any) -> behaviour.Sizes:
    """A 4x4 and a 16x16 input with the same 2x2 kernel: 9 output pixels against 225."""
    K = behaviour.drawn((2, 2), runner, 21)
    small, large = behaviour.drawn((4, 4), runner, 22), behaviour.drawn((16, 16), runner, 23)
    return behaviour.Sizes((small, K), (large, K), "X (4, 4)", "X (16, 16)", "the same (2, 2) kernel",
                           "the output's pixels or rows")


CHECKS = {
    # The task asks for no loop over the output: the work may grow with the kernel, not with the output.
    "corr2d": behaviour.no_loop(core.simple_check(CASES["corr2d"], FORBIDDEN["corr2d"]), _corr2d_sizes,
                                FORBIDDEN["corr2d"], allowed=" (a loop over the kernel's entries is fine)"),
    "Conv2D": _check_conv2d_layer,
    "convolve2d": core.simple_check(CASES["convolve2d"], FORBIDDEN["convolve2d"]),
    "learn_kernel": _check_learn_kernel,
    "learned_kernel": core.answer_check("learned_kernel", ANSWERS, ((0, 0), (0, 0))),
}


# ---------------------------------------------------------------------------------------------
# The backward pass of Y = corr2d(X, K) + b, written by hand: references by autograd through cnnlib.conv2d.
_NO_CONV_GRAD = core.forbid(core.cnn(*core.CONV_OPS) + core.CONV + core.AUTOGRAD, core.CONV_C, core.CONV_ATEN,
                            core.LOW_LEVEL + core.NUMPY_CONV + core.AUTOGRAD_STATIC)


def _conv_grads(X: torch.Tensor, K: torch.Tensor, dY: torch.Tensor, stride: Any = 1) -> tuple:
    """(dX, dK, db) of L = sum(dY * Y) for Y = cnnlib.conv2d(X, K, b, stride) on one channel, by autograd, float64."""
    Xg, Kg = c.detach(X).clone().requires_grad_(True), c.detach(K).clone().requires_grad_(True)
    bg = c.tensor([0.5], dtype=c.F64).requires_grad_(True)
    with torch.enable_grad():
        Y = c.ops.conv2d(Xg[None, None], Kg[None, None], bg, stride=stride)[0, 0]
        c.backward(Y, dY)
    return c.detach(c.grad_of(Xg)), c.detach(c.grad_of(Kg)), c.detach(c.grad_of(bg))[0]


def _zeros(shape: tuple) -> torch.Tensor:
    return c.tensor(0.0, dtype=c.F64).new_zeros(shape)


def _grad_input(dY, K, input_shape, stride=1):
    return _conv_grads(_zeros(tuple(input_shape)), K, dY, stride)[0]


def _grad_kernel(X, dY, kernel_size, stride=1):
    return _conv_grads(X, _zeros(tuple(kernel_size)), dY, stride)[1]


def _grad_bias(dY):
    return _conv_grads(dY, _zeros((1, 1)), dY)[2]


# (H, W, kh, kw, stride): stride 1 (the chapter's case), then strides that skip rows and columns
_GRAD_SPECS = [(1, 1, 1, 1, 1), (3, 3, 2, 2, 1), (4, 6, 4, 6, 1), (5, 7, 3, 2, 1), (4, 4, 2, 2, 2), (5, 5, 2, 2, 2),
               (6, 5, 2, 3, (2, 1)), (7, 8, 3, 3, 3), (7, 6, 1, 2, (3, 2)), (8, 7, 3, 2, (1, 3))]


def _build_grad(which):
    def build(spec, g, integer):
        H, W, kh, kw, stride = spec
        sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
        X, K = core.data((H, W), g, integer), core.data((kh, kw), g, integer)
        dY = core.data(((H - kh) // sh + 1, (W - kw) // sw + 1), g, integer)
        kwargs = {} if stride == 1 else {"stride": stride}
        at = "" if stride == 1 else f", stride={stride!r}"
        if which == "input":
            return ((dY, K, (H, W)), kwargs, f"dY {core.shape(dY)}, K {(kh, kw)}, input_shape {(H, W)}{at}",
                    (("dY", dY), ("K", K)))
        if which == "kernel":
            return ((X, dY, (kh, kw)), kwargs, f"X {(H, W)}, dY {core.shape(dY)}, kernel_size {(kh, kw)}{at}",
                    (("X", X), ("dY", dY)))
        return (dY,), {}, f"dY {core.shape(dY)}", (("dY", dY),)
    return build


CASES["corr2d_grad_input"] = core.tensor_cases(_grad_input, _GRAD_SPECS, _build_grad("input"), 37)
CASES["corr2d_grad_kernel"] = core.tensor_cases(_grad_kernel, _GRAD_SPECS, _build_grad("kernel"), 38)
CASES["corr2d_grad_bias"] = core.tensor_cases(_grad_bias, _GRAD_SPECS[::2], _build_grad("bias"), 39)
CHECKS.update({
    "corr2d_grad_input": core.simple_check(CASES["corr2d_grad_input"], _NO_CONV_GRAD),
    "corr2d_grad_kernel": core.simple_check(CASES["corr2d_grad_kernel"], _NO_CONV_GRAD),
    "corr2d_grad_bias": core.simple_check(CASES["corr2d_grad_bias"], _NO_CONV_GRAD),
    "grad_input_kernel": core.answer_check("grad_input_kernel", ANSWERS, 0),
    "grad_input_kernel_conv": core.answer_check("grad_input_kernel_conv", ANSWERS, 0),
})
CHECKS["uncovered_inputs"] = core.answer_check("uncovered_inputs", ANSWERS, 0)
