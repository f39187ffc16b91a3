"""Hidden tests of assignment 04_channels: correlation over several input and output channels, and 1x1 (one
matrix product, no loop); a grouped kernel as an ordinary one (against cnnlib.conv2d(groups=)) with its
ValueError; a question on costs in four parts."""
from typing import Any

from cnngrader.grading import behaviour, core, errors
from cnngrader.kernel import captured as c

REFERENCES = {
    "corr2d_multi_in": c.ops.corr2d_multi_in,
    "corr2d_multi_in_out": c.ops.corr2d_multi_in_out,
    "corr2d_multi_in_out_1x1": c.ops.corr2d_multi_in_out_1x1,
}

# Single-channel corr2d is allowed (the chapter builds on it); every other convolution route is not.
_NO_CONV = core.forbid(core.cnn(*core.CONV_OPS[1:]) + core.CONV, core.CONV_C, core.CONV_ATEN,
                       core.LOW_LEVEL + core.NUMPY_CONV)
FORBIDDEN = {name: _NO_CONV for name in REFERENCES}


# (C, H, W, kh, kw) and (Co, C, H, W, kh, kw)
def _build_multi_in(spec, g, integer):
    C, H, W, kh, kw = spec
    X, K = core.data((C, H, W), g, integer), core.data((C, kh, kw), g, integer)
    return (X, K), {}, f"X {(C, H, W)} and K {(C, kh, kw)}", (("X", X), ("K", K))


_MULTI_IN_SPECS = [(1, 2, 2, 1, 1), (2, 3, 3, 2, 2), (3, 3, 4, 1, 2), (2, 4, 3, 4, 3), (3, 5, 4, 2, 3),
                   (2, 2, 5, 1, 1), (4, 4, 4, 3, 3)]


def _build_multi_in_out(spec, g, integer):
    Co, C, H, W, kh, kw = spec
    X, K = core.data((C, H, W), g, integer), core.data((Co, C, kh, kw), g, integer)
    return (X, K), {}, f"X {(C, H, W)} and K {(Co, C, kh, kw)}", (("X", X), ("K", K))


_MULTI_IN_OUT_SPECS = [(1, 1, 2, 2, 1, 1), (2, 1, 3, 3, 2, 2), (3, 2, 3, 4, 2, 1), (2, 3, 4, 3, 4, 3),
                       (3, 2, 4, 5, 3, 2), (1, 3, 3, 3, 1, 1)]
_ONE_BY_ONE_SPECS = [(1, 1, 1, 1, 1, 1), (2, 1, 2, 3, 1, 1), (1, 3, 3, 2, 1, 1), (3, 2, 4, 4, 1, 1),
                     (4, 3, 3, 5, 1, 1), (2, 4, 5, 2, 1, 1)]


CASES = {
    "corr2d_multi_in": core.tensor_cases(REFERENCES["corr2d_multi_in"], _MULTI_IN_SPECS, _build_multi_in, 6),
    "corr2d_multi_in_out": core.tensor_cases(REFERENCES["corr2d_multi_in_out"], _MULTI_IN_OUT_SPECS,
                                             _build_multi_in_out, 7),
    "corr2d_multi_in_out_1x1": core.tensor_cases(REFERENCES["corr2d_multi_in_out_1x1"], _ONE_BY_ONE_SPECS,
                                                 _build_multi_in_out, 8),
}

ANSWERS = core.answers(__file__)  # the conceptual question's answer: a secret file, absent in students' copies


def _one_by_one_sizes(runner: Any) -> behaviour.Sizes:
    """1 channel in and out on a 2x2 map, against 4 in and 5 out on 8x8: 4 outputs against 320."""
    small = (behaviour.drawn((1, 2, 2), runner, 31), behaviour.drawn((1, 1, 1, 1), runner, 32))
    large = (behaviour.drawn((4, 8, 8), runner, 33), behaviour.drawn((5, 4, 1, 1), runner, 34))
    return behaviour.Sizes(small, large, "X (1, 2, 2) and K (1, 1, 1, 1)", "X (4, 8, 8) and K (5, 4, 1, 1)",
                           "a 1x1 kernel", "the channels or the pixels")


CHECKS = {name: core.simple_check(CASES[name], FORBIDDEN[name]) for name in REFERENCES}
# The task asks for one matrix product and no loop.
CHECKS["corr2d_multi_in_out_1x1"] = behaviour.no_loop(CHECKS["corr2d_multi_in_out_1x1"], _one_by_one_sizes,
                                                      FORBIDDEN["corr2d_multi_in_out_1x1"], max_matmuls=1)


# ---------------------------------------------------------------------------------------------
# Groups: grouped_to_dense against the kernel read off cnnlib.conv2d(..., groups=), and its ValueError.
FORBIDDEN["grouped_to_dense"] = core.forbid(core.cnn(*core.CONV_OPS) + core.CONV, core.CONV_C, core.CONV_ATEN,
                                            core.LOW_LEVEL + core.NUMPY_CONV)


def _dense_from_cnnlib(K, groups):
    """The ordinary kernel of cnnlib's grouped convolution: its response to each one-hot (C, kh, kw) input."""
    F, Cg, kh, kw = core.shape(K)
    n = Cg * groups * kh * kw
    E = c.tensor(0.0, dtype=c.F64).new_zeros((n, n))
    E[range(n), range(n)] = 1.0
    Y = c.ops.conv2d(E.reshape(n, Cg * groups, kh, kw), K, groups=groups)  # (n, F, 1, 1)
    return Y[:, :, 0, 0].T.reshape(F, Cg * groups, kh, kw)


def _build_grouped(spec, g, integer):
    F, Cg, kh, kw, groups = spec
    K = core.data((F, Cg, kh, kw), g, integer)
    return (K, groups), {}, f"K {(F, Cg, kh, kw)}, groups={groups}", (("K", K),)


# (F, C // groups, kh, kw, groups): one group (an ordinary kernel), depthwise, and groups in between
_GROUPED_SPECS = [(1, 1, 1, 1, 1), (2, 1, 1, 1, 2), (4, 1, 2, 2, 4), (4, 2, 1, 2, 2), (6, 2, 2, 1, 3), (3, 2, 2, 2, 1),
                  (8, 1, 3, 3, 4), (6, 3, 1, 1, 2), (4, 2, 3, 2, 4)]
_K = core.data((6, 2, 1, 1), core.gen(5), True)
_GROUPED_ERRORS = [((_K, 4), {}, "K (6, 2, 1, 1), groups=4 (4 does not divide 6 output channels)"),
                   ((_K, 0), {}, "K (6, 2, 1, 1), groups=0")]

CASES["grouped_to_dense"] = core.tensor_cases(_dense_from_cnnlib, _GROUPED_SPECS, _build_grouped, 41)
CHECKS["grouped_to_dense"] = errors.with_errors(
    core.simple_check(CASES["grouped_to_dense"], FORBIDDEN["grouped_to_dense"]), _GROUPED_ERRORS, "ValueError",
    "groups", FORBIDDEN["grouped_to_dense"])
CHECKS["one_by_one_cost"] = core.answer_check("one_by_one_cost", ANSWERS, 0)
CHECKS["one_by_one_macs"] = core.answer_check("one_by_one_macs", ANSWERS, 0)
CHECKS["grouped_params"] = core.answer_check("grouped_params", ANSWERS, 0)
CHECKS["separable_params"] = core.answer_check("separable_params", ANSWERS, 0)
