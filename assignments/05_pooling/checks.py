"""Hidden tests of assignment 05_pooling: max and average pooling, global average pooling, the backward pass of
max and average pooling (against autograd through cnnlib.pool2d), and a question in three parts."""
import torch

from cnngrader.grading import core
from cnngrader.kernel import captured as c

REFERENCES = {
    "pool2d": c.ops.pool2d,
    "global_avg_pool2d": c.ops.global_avg_pool2d,
}

_POOLS = core.cnn("pool2d", "global_avg_pool2d", "MaxPool2d", "AvgPool2d") + core.POOL
FORBIDDEN = {
    "pool2d": core.forbid(_POOLS, core.POOL_C, core.POOL_ATEN, core.LOW_LEVEL + core.NUMPY_POOL),
    "global_avg_pool2d": core.forbid(_POOLS, core.POOL_C, core.POOL_ATEN, core.LOW_LEVEL + core.NUMPY_POOL),
}


# (shape, pool_size, stride, padding, mode)
def _build_pool(spec, g, integer):
    shape, pool_size, stride, padding, mode = spec
    X = core.data(shape, g, integer)
    kwargs = {"mode": mode}
    desc = f"X {shape}, pool_size={pool_size!r}"
    if stride is not None:
        kwargs["stride"] = stride
        desc += f", stride={stride!r}"
    if padding:
        kwargs["padding"] = padding
        desc += f", padding={padding!r}"
    return (X, pool_size), kwargs, desc + f", mode={mode!r}", (("X", X),)


_POOL_SPECS = [
    ((2, 2), 2, None, 0, "max"), ((2, 2), 2, None, 0, "avg"), ((3, 3), 2, 1, 0, "max"), ((3, 3), 2, 1, 0, "avg"),
    ((3, 4), (2, 3), None, 0, "max"), ((4, 3), 1, None, 0, "avg"), ((5, 5), 2, 3, 0, "max"), ((5, 5), 2, 3, 0, "avg"),
    ((4, 4), 2, None, (0, 1), "max"), ((4, 4), 2, None, (1, 0), "avg"), ((4, 5), 3, (2, 1), 1, "max"),
    ((4, 5), 3, (2, 1), 1, "avg"), ((2, 3, 4), 2, None, 0, "max"), ((2, 3, 4), 2, 1, 0, "avg"),
    ((3, 4, 4), (4, 4), None, 0, "avg"), ((2, 5, 3), (2, 1), (1, 2), (1, 0), "max"),
]


def _build_gap(spec, g, integer):
    X = core.data(spec, g, integer)
    return (X,), {}, f"X {spec}", (("X", X),)


_GAP_SPECS = [(1, 1, 1), (2, 2, 3), (3, 1, 4), (1, 2, 2, 2), (2, 3, 2, 3), (2, 1, 4, 1)]


CASES = {
    "pool2d": core.tensor_cases(REFERENCES["pool2d"], _POOL_SPECS, _build_pool, 9),
    "global_avg_pool2d": core.tensor_cases(REFERENCES["global_avg_pool2d"], _GAP_SPECS, _build_gap, 10),
}

ANSWERS = core.answers(__file__)  # the conceptual question's answer: a secret file, absent in students' copies

CHECKS = {name: core.simple_check(CASES[name], FORBIDDEN[name]) for name in REFERENCES}


# The backward passes, written by hand: no pooling function and no autograd.
_NO_AUTOGRAD = core.forbid(_POOLS + core.AUTOGRAD, core.POOL_C, core.POOL_ATEN,
                           core.LOW_LEVEL + core.NUMPY_POOL + core.AUTOGRAD_STATIC)
_randperm = torch.randperm  # taken when the grader is imported


def _pool_grad(mode):
    """The reference: dX by autograd through cnnlib.pool2d, in float64."""
    def grad(X, dY, pool_size, stride=None, padding=0):
        Xg = c.detach(X).clone().requires_grad_(True)
        with torch.enable_grad():
            Y = c.ops.pool2d(Xg, pool_size, stride, padding, mode=mode)
            c.backward(Y, c.to(dY, dtype=c.F64))
        return c.detach(c.grad_of(Xg))
    return grad


def _build_pool_grad(mode):
    def build(spec, g, integer):
        shape, pool_size, stride, padding = spec
        n = 1
        for s in shape:
            n *= s
        # distinct values, so that every window has one maximum: a permutation of 0..n-1, centred and halved
        X = (c.to(_randperm(n, generator=g), dtype=c.F64).reshape(shape) - n // 2) / (2 if integer else 4)
        H, W = shape[-2:]
        kh, kw = pool_size if isinstance(pool_size, tuple) else (pool_size, pool_size)
        sh, sw = (kh, kw) if stride is None else stride if isinstance(stride, tuple) else (stride, stride)
        ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
        dY = core.data((*shape[:-2], (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1), g, integer)
        desc = f"X {shape}, dY {core.shape(dY)}, pool_size={pool_size!r}"
        kwargs = {}
        if stride is not None:
            kwargs["stride"] = stride
            desc += f", stride={stride!r}"
        if padding:
            kwargs["padding"] = padding
            desc += f", padding={padding!r}"
        return (X, dY, pool_size), kwargs, desc + f" ({mode} pooling)", (("X", X), ("dY", dY))
    return build


# (shape, pool_size, stride, padding): separate windows, overlapping ones, strides larger than the window, and
# padding (at most half the window, as pool2d allows) on one axis or both
_GRAD_SPECS = [((2, 2), 2, None, 0), ((3, 3), 2, 1, 0), ((4, 4), 2, None, 1), ((4, 5), (2, 3), (1, 2), (1, 0)),
               ((5, 5), 2, 3, 0), ((2, 4, 4), 3, 1, 1), ((3, 4, 6), 2, None, (0, 1)), ((2, 5, 4), (3, 2), (2, 1), 0),
               ((6, 6), 3, 2, 1), ((2, 3, 5), (3, 3), 2, (1, 1))]

CASES["max_pool_backward"] = core.tensor_cases(_pool_grad("max"), _GRAD_SPECS, _build_pool_grad("max"), 35)
CASES["avg_pool_backward"] = core.tensor_cases(_pool_grad("avg"), _GRAD_SPECS, _build_pool_grad("avg"), 36)
CHECKS["max_pool_backward"] = core.simple_check(CASES["max_pool_backward"], _NO_AUTOGRAD)
CHECKS["avg_pool_backward"] = core.simple_check(CASES["avg_pool_backward"], _NO_AUTOGRAD)
CHECKS["pool_gradients"] = core.answer_check("pool_gradients", ANSWERS, 0)
CHECKS["pool_gradients_avg"] = core.answer_check("pool_gradients_avg", ANSWERS, 0)
CHECKS["pool_overlap_grad"] = core.answer_check("pool_overlap_grad", ANSWERS, 0.0)
CHECKS["gap_grad"] = core.answer_check("gap_grad", ANSWERS, 0.0)
