"""Hidden tests of assignment 03_padding_stride: output shapes, padding, strided correlation, receptive fields,
an output size worked out by hand, a dilated correlation with its ValueError, and a question on dilation in
three parts."""
from cnngrader.grading import core, errors
from cnngrader.kernel import captured as c

REFERENCES = {
    "conv_output_shape": c.shapes.conv_output_shape,
    "pad2d": c.ops.pad2d,
    "corr2d_padded": c.ops.corr2d_padded,
    "receptive_field": c.shapes.receptive_field,
}

FORBIDDEN = {
    "conv_output_shape": core.forbid(core.cnn("conv_output_shape")),
    "pad2d": core.forbid(core.cnn("pad2d", "corr2d_padded") + core.PAD, core.PAD_C, core.PAD_ATEN,
                         core.LOW_LEVEL + core.NUMPY_PAD),
    # The task is the padded, strided slide: no padding but the student's pad2d, no cnnlib correlation.
    "corr2d_padded": core.forbid(core.cnn(*core.CONV_OPS, "pad2d") + core.PAD + core.CONV, core.PAD_C + core.CONV_C,
                                 core.PAD_ATEN + core.CONV_ATEN, core.LOW_LEVEL + core.NUMPY_PAD + core.NUMPY_CONV),
    "receptive_field": core.forbid(core.cnn("receptive_field")),
}


# (H, W, kh, kw, padding, stride)
def _build_padded(spec, g, integer):
    H, W, kh, kw, padding, stride = spec
    X, K = core.data((H, W), g, integer), core.data((kh, kw), g, integer)
    kwargs = {"padding": padding, "stride": stride}
    return (X, K), kwargs, f"X {(H, W)}, K {(kh, kw)}, padding={padding!r}, stride={stride!r}", (("X", X), ("K", K))


_PADDED_SPECS = [
    (3, 3, 2, 2, 0, 1), (3, 3, 3, 3, 1, 1), (4, 4, 1, 1, 0, 3), (5, 5, 2, 2, 1, 3), (4, 5, 3, 2, (0, 1), 1),
    (5, 4, 2, 3, (1, 0), (2, 1)), (6, 7, 3, 3, 1, 2), (7, 5, 2, 2, (2, 1), (3, 2)), (3, 4, 5, 4, (1, 0), 1),
    (6, 6, 1, 3, (0, 2), (1, 4)), (8, 7, 4, 3, 2, (2, 3)),
]


def _build_pad(spec, g, integer):
    shape, padding = spec
    X = core.data(shape, g, integer)
    return (X,), {"padding": padding}, f"X {shape}, padding={padding!r}", (("X", X),)


_PAD_SPECS = [((1, 1), 1), ((2, 3), 0), ((2, 3), (0, 2)), ((3, 2), (1, 0)), ((3, 4), 2), ((2, 2, 3), 1),
              ((4, 5), (2, 1)), ((3, 3, 2), (0, 1))]


def _random_shapes(g):
    """Output-shape calls drawn per run: ints and pairs, with padding and stride."""
    n, k = core.randint(g, 5, 64), core.randint(g, 1, 5)
    h, w, kh, kw = core.randint(g, 4, 40), core.randint(g, 4, 40), core.randint(g, 1, 4), core.randint(g, 1, 4)
    return [((n, k), {"padding": core.randint(g, 0, 3), "stride": core.randint(g, 1, 4)}),
            (((h, w), (kh, kw)), {"padding": (core.randint(g, 0, 2), core.randint(g, 0, 2)),
                                  "stride": (core.randint(g, 1, 3), core.randint(g, 1, 3))}),
            ((core.randint(g, 8, 30), (kh, kw)), {"stride": (core.randint(g, 1, 3), core.randint(g, 1, 3))})]


def _random_stacks(g):
    """Stacks of (kernel, stride) layers drawn per run."""
    stacks = []
    for depth in (2, 3, 4):
        stacks.append(([(core.randint(g, 1, 7), core.randint(g, 1, 3)) for _ in range(depth)],))
    return [(layers, {}) for layers in stacks]


ANSWERS = core.answers(__file__)  # the conceptual question's answer: a secret file, absent in students' copies

# The fixed calls are the edge cases (no padding, kernel as wide as the input, pairs, an empty stack);
# the rest are drawn per run.
CASES = {
    "conv_output_shape": core.value_draw("conv_output_shape", REFERENCES["conv_output_shape"], [
        ((8, 3), {}), ((5, 5), {}), ((7, 2), {"stride": 3}), (((8, 6), 3), {}), ((6, 1), {"stride": (2, 3)}),
        (((5, 7), (5, 2)), {"padding": (0, 1), "stride": (1, 3)}),
    ], _random_shapes, 33),
    "pad2d": core.tensor_cases(REFERENCES["pad2d"], _PAD_SPECS, _build_pad, 5),
    "corr2d_padded": core.tensor_cases(REFERENCES["corr2d_padded"], _PADDED_SPECS, _build_padded, 4),
    "receptive_field": core.value_draw("receptive_field", REFERENCES["receptive_field"], [
        (([],), {}), (([(3, 1)],), {}), (([(2, 2), (3, 1)],), {}), (([[3, 2], [3, 2], [3, 2]],), {}),
    ], _random_stacks, 34),
}

CHECKS = {
    "conv_output_shape": core.value_check(CASES["conv_output_shape"], FORBIDDEN["conv_output_shape"],
                                          core.accept_int_or_pair),
    "pad2d": core.simple_check(CASES["pad2d"], FORBIDDEN["pad2d"]),
    "corr2d_padded": core.simple_check(CASES["corr2d_padded"], FORBIDDEN["corr2d_padded"]),
    "receptive_field": core.value_check(CASES["receptive_field"], FORBIDDEN["receptive_field"], core.accept_int),
    "output_size_by_hand": core.answer_check("output_size_by_hand", ANSWERS, (0, 0)),
}


# ---------------------------------------------------------------------------------------------
# Dilation: corr2d_dilated against cnnlib.conv2d(..., dilation=, padding=), and the ValueError naming K.
FORBIDDEN["corr2d_dilated"] = FORBIDDEN["corr2d_padded"]


def _dilated(X, K, dilation=1, padding=0):
    return c.ops.conv2d(X[None, None], K[None, None], padding=padding, dilation=dilation)[0, 0]


def _build_dilated(spec, g, integer):
    H, W, kh, kw, dilation, padding = spec
    X, K = core.data((H, W), g, integer), core.data((kh, kw), g, integer)
    kwargs = {"dilation": dilation, **({"padding": padding} if padding else {})}
    desc = f"X {(H, W)}, K {(kh, kw)}, " + ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return (X, K), kwargs, desc, (("X", X), ("K", K))


# (H, W, kh, kw, dilation, padding): dilation 1 (corr2d), 2 and 3, pairs, kernels spanning the whole input
_DILATED_SPECS = [(3, 3, 2, 2, 1, 0), (3, 3, 2, 2, 2, 0), (5, 4, 2, 2, 2, 1), (5, 6, 3, 2, (2, 3), 0),
                  (4, 4, 3, 3, 2, 1), (7, 5, 2, 3, 3, (0, 1)), (6, 6, 1, 3, (1, 2), (1, 0)), (8, 7, 3, 3, (3, 2), 2)]
# Kernels whose dilated span exceeds the padded input on one axis or both.
_DILATED_ERRORS = [((core.data((4, 4), core.gen(1), True), core.data((3, 3), core.gen(2), True)), {"dilation": 2},
                    "X (4, 4), K (3, 3), dilation=2 (K spans 5 x 5 pixels)"),
                   ((core.data((3, 6), core.gen(3), True), core.data((2, 2), core.gen(4), True)),
                    {"dilation": (3, 1), "padding": (0, 1)},
                    "X (3, 6), K (2, 2), dilation=(3, 1), padding=(0, 1) (K spans 4 rows, the padded input has 3)")]

CASES["corr2d_dilated"] = core.tensor_cases(_dilated, _DILATED_SPECS, _build_dilated, 40)
CHECKS["corr2d_dilated"] = errors.with_errors(core.simple_check(CASES["corr2d_dilated"], FORBIDDEN["corr2d_dilated"]),
                                              _DILATED_ERRORS, "ValueError", "K", FORBIDDEN["corr2d_dilated"])
CHECKS["dilated_span"] = core.answer_check("dilated_span", ANSWERS, 0)
CHECKS["dilated_same_padding"] = core.answer_check("dilated_same_padding", ANSWERS, 0)
CHECKS["dilated_field"] = core.answer_check("dilated_field", ANSWERS, 0)
