"""Hidden tests of assignment 01_fc_to_conv: parameter counts, and a convolution as a dense matrix."""
from cnngrader.kernel import captured as c
from cnngrader.grading import core

# References: cnnlib's own versions, captured when the grader is imported.
REFERENCES = {
    "fc_param_count": c.shapes.fc_param_count,
    "conv_param_count": c.shapes.conv_param_count,
    "conv_as_matrix": c.ops.conv_as_matrix,
}

# What each function may not call: the function itself, and for the matrix any convolution.
FORBIDDEN = {
    "fc_param_count": core.forbid(core.cnn("fc_param_count")),
    "conv_param_count": core.forbid(core.cnn("conv_param_count")),
    "conv_as_matrix": core.forbid(core.cnn(*core.CONV_OPS) + core.CONV, core.CONV_C, core.CONV_ATEN,
                                  core.LOW_LEVEL + core.NUMPY_CONV),
}


def _build_matrix(spec, g, integer):
    H, W, kh, kw = spec
    K = core.data((kh, kw), g, integer)
    return (K, (H, W)), {}, f"K {(kh, kw)} and input_shape {(H, W)}", (("K", K),)


# (H, W, kh, kw)
_MATRIX_SPECS = [(1, 1, 1, 1), (2, 2, 2, 2), (3, 3, 1, 1), (3, 4, 2, 2), (4, 3, 2, 3), (2, 5, 1, 3), (4, 4, 3, 2)]

CASES = {
    "fc_param_count": core.value_cases("fc_param_count", REFERENCES["fc_param_count"], [
        ((1, 1), {}), ((784, 256), {}), ((3, 5), {"bias": False}), (((300, 300), 10_000), {}),
        (((28, 28), 10), {"bias": False}), (((3, 32, 32), 100), {}),
    ]),
    "conv_param_count": core.value_cases("conv_param_count", REFERENCES["conv_param_count"], [
        ((1, 1, 1), {}), ((1, 6, 5), {}), ((6, 16, 5), {}), ((3, 64, (3, 5)), {}), ((16, 32, 1), {"bias": False}),
        ((2, 3, (1, 4)), {"bias": False}),
    ]),
    "conv_as_matrix": core.tensor_cases(REFERENCES["conv_as_matrix"], _MATRIX_SPECS, _build_matrix, 11),
}

CHECKS = {
    "fc_param_count": core.value_check(CASES["fc_param_count"], FORBIDDEN["fc_param_count"], core.accept_int),
    "conv_param_count": core.value_check(CASES["conv_param_count"], FORBIDDEN["conv_param_count"], core.accept_int),
    "conv_as_matrix": core.simple_check(CASES["conv_as_matrix"], FORBIDDEN["conv_as_matrix"]),
}
