"""Hidden tests of assignment 05_pooling: max and average pooling, and global average pooling."""
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
CHECKS["pool_gradients"] = core.answer_check("pool_gradients", ANSWERS, (0, 0))
