"""Hidden tests of assignment 01_fc_to_conv: parameter counts, a convolution as a dense matrix, and a question
on equivariance and invariance in four parts."""
from cnngrader.grading import core
from cnngrader.kernel import captured as c

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

def _random_fc(g):
    """Two layer sizes and an image shape, drawn per run."""
    calls = [((core.randint(g, 2, 900), core.randint(g, 2, 500)), {}),
             (((core.randint(g, 2, 64), core.randint(g, 2, 64)), core.randint(g, 1, 300)), {"bias": False}),
             (((core.randint(g, 1, 4), core.randint(g, 2, 40), core.randint(g, 2, 40)), core.randint(g, 1, 99)), {})]
    return calls


def _random_conv(g):
    """Channel counts and kernel sizes (ints and pairs), drawn per run."""
    return [((core.randint(g, 1, 64), core.randint(g, 1, 128), core.randint(g, 1, 7)), {}),
            ((core.randint(g, 1, 32), core.randint(g, 1, 32), (core.randint(g, 1, 5), core.randint(g, 1, 5))),
             {"bias": False}),
            ((core.randint(g, 1, 16), core.randint(g, 1, 16), (core.randint(g, 1, 3), core.randint(g, 2, 6))), {})]


ANSWERS = core.answers(__file__)  # the conceptual question's answer: a secret file, absent in students' copies

# The fixed calls are the edge cases (1x1, no bias, image shapes); the rest are drawn per run.
CASES = {
    "fc_param_count": core.value_draw("fc_param_count", REFERENCES["fc_param_count"], [
        ((1, 1), {}), ((3, 5), {"bias": False}), (((28, 28), 10), {"bias": False}), (((3, 32, 32), 100), {}),
    ], _random_fc, 31),
    "conv_param_count": core.value_draw("conv_param_count", REFERENCES["conv_param_count"], [
        ((1, 1, 1), {}), ((16, 32, 1), {"bias": False}), ((2, 3, (1, 4)), {"bias": False}),
    ], _random_conv, 32),
    "conv_as_matrix": core.tensor_cases(REFERENCES["conv_as_matrix"], _MATRIX_SPECS, _build_matrix, 11),
}

CHECKS = {
    "fc_param_count": core.value_check(CASES["fc_param_count"], FORBIDDEN["fc_param_count"], core.accept_int),
    "conv_param_count": core.value_check(CASES["conv_param_count"], FORBIDDEN["conv_param_count"], core.accept_int),
    "conv_as_matrix": core.simple_check(CASES["conv_as_matrix"], FORBIDDEN["conv_as_matrix"]),
    # Question 1, one check per part
    "shift_properties": core.answer_check("shift_properties", ANSWERS, 0),
    "shift_max": core.answer_check("shift_max", ANSWERS, 0),
    "shift_fc": core.answer_check("shift_fc", ANSWERS, 0),
    "shift_max_border": core.answer_check("shift_max_border", ANSWERS, 0),
}
