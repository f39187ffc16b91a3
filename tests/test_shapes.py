"""cnnlib.shapes: output sizes, receptive fields and parameter counts, checked against what torch
actually produces."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import cnnlib

META = torch.device("meta")  # shapes without arithmetic: torch computes output sizes only


def torch_conv_shape(n, k, p, s, d=1) -> tuple[int, int]:
    """The (H', W') torch's own F.conv2d gives for one image of size n with kernel k."""
    n, k, p, s, d = (v if isinstance(v, tuple) else (v, v) for v in (n, k, p, s, d))
    X = torch.empty(1, 1, *n, device=META)
    K = torch.empty(1, 1, *k, device=META)
    return tuple(F.conv2d(X, K, stride=s, padding=p, dilation=d).shape[-2:])


# A grid of ints: every input size up to 9 with every kernel, padding and stride that fits.
INT_GRID = [
    (n, k, p, s)
    for n, k, p, s in itertools.product(range(1, 10), range(1, 6), range(0, 3), range(1, 4))
    if k <= n + 2 * p
]


def test_conv_output_shape_matches_torch_on_a_grid_of_ints():
    assert len(INT_GRID) > 300
    for n, k, p, s in INT_GRID:
        got = cnnlib.conv_output_shape(n, k, padding=p, stride=s)
        assert isinstance(got, int), (n, k, p, s)
        assert (got, got) == torch_conv_shape(n, k, p, s), f"n={n} k={k} p={p} s={s}"


@st.composite
def pair_cases(draw):
    k = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    n = tuple(draw(st.integers(max(1, k[i] - 2 * p[i]), 30)) for i in range(2))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    # Mix the forms: any argument may be an int when both of its entries agree.
    n, k, p, s = (v[0] if v[0] == v[1] and draw(st.booleans()) else v for v in (n, k, p, s))
    return n, k, p, s


@given(case=pair_cases())
def test_conv_output_shape_matches_torch_with_pairs(case):
    n, k, p, s = case
    got = cnnlib.conv_output_shape(n, k, padding=p, stride=s)
    expected = torch_conv_shape(n, k, p, s)
    if all(isinstance(v, int) for v in case):
        assert got == expected[0] and expected[0] == expected[1]
    else:
        assert got == expected


# Dilated kernels: every size up to 12, kernel up to 4, dilation up to 3, wherever the span fits.
DILATED_GRID = [
    (n, k, p, s, d)
    for n, k, p, s, d in itertools.product(range(1, 13), range(1, 5), range(0, 3), range(1, 4), range(1, 4))
    if d * (k - 1) + 1 <= n + 2 * p
]


def test_conv_output_shape_with_dilation_matches_torch_on_a_grid():
    assert len(DILATED_GRID) > 1000
    for n, k, p, s, d in DILATED_GRID:
        got = cnnlib.conv_output_shape(n, k, padding=p, stride=s, dilation=d)
        assert (got, got) == torch_conv_shape(n, k, p, s, d), f"n={n} k={k} p={p} s={s} d={d}"
        assert got == (n + 2 * p - d * (k - 1) - 1) // s + 1  # the formula of chapter 3


@given(case=pair_cases(), d=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_conv_output_shape_with_dilation_pairs(case, d):
    n, k, p, s = case
    n2, k2, p2 = (v if isinstance(v, tuple) else (v, v) for v in (n, k, p))
    if any(d[i] * (k2[i] - 1) + 1 > n2[i] + 2 * p2[i] for i in range(2)):
        with pytest.raises(ValueError, match=r"with dilation \d spans \d+, which is larger than the padded input"):
            cnnlib.conv_output_shape(n, k, padding=p, stride=s, dilation=d)
        return
    assert cnnlib.conv_output_shape(n, k, padding=p, stride=s, dilation=d) == torch_conv_shape(n, k, p, s, d)


def test_conv_output_shape_dilation_hand_cases():
    # A 3x3 kernel with dilation 2 spans 5 pixels: 28 -> 24 without padding, 28 with padding 2.
    assert cnnlib.conv_output_shape(28, 3, dilation=2) == 24
    assert cnnlib.conv_output_shape(28, 3, padding=2, dilation=2) == 28
    assert cnnlib.conv_output_shape(28, 3, padding=2, dilation=(2, 1)) == (28, 30)
    assert cnnlib.conv_output_shape(9, 3, stride=2, dilation=3) == 2  # span 7: windows at 0 and 2
    with pytest.raises(ValueError, match=r"kernel_size 3 with dilation 3 spans 7, which is larger than .* 6"):
        cnnlib.conv_output_shape(6, 3, dilation=3)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        cnnlib.conv_output_shape(6, 3, dilation=0)
    with pytest.raises(TypeError, match="dilation must be an int or a pair of ints"):
        cnnlib.conv_output_shape(6, 3, dilation=1.5)


@pytest.mark.parametrize("n, k, p, s",
                         [(28, 5, 2, 1), (14, 5, 0, 1), (10, 3, 1, 1), (28, 2, 0, 2), (9, 3, 1, 2), (7, 2, 1, 2)])
def test_conv_output_shape_matches_torch_pooling(n, k, p, s):
    # The same formula sizes pooling windows (torch allows padding up to half the window).
    X = torch.zeros(1, 1, n, n)
    assert cnnlib.conv_output_shape(n, k, p, s) == F.max_pool2d(X, k, s, p).shape[-1]
    assert cnnlib.conv_output_shape(n, k, p, s) == F.avg_pool2d(X, k, s, p).shape[-1]


def test_conv_output_shape_lenet_cases():
    assert cnnlib.conv_output_shape(28, 5, padding=2) == 28
    assert cnnlib.conv_output_shape(28, 2, stride=2) == 14
    assert cnnlib.conv_output_shape(14, 5) == 10
    assert cnnlib.conv_output_shape((28, 28), 5, padding=2) == (28, 28)
    assert cnnlib.conv_output_shape((8, 8), (3, 5), padding=(0, 1), stride=(3, 4)) == (2, 2)


def test_total_padding_form_equals_conv_output_shape():
    # The notes' form with the total padding P = 2p over both sides: floor((n - k + P + s) / s).
    for n, k, p, s in INT_GRID:
        P = 2 * p
        assert math.floor((n - k + P + s) / s) == cnnlib.conv_output_shape(n, k, padding=p, stride=s), (n, k, p, s)


def test_conv_output_shape_errors():
    with pytest.raises(ValueError, match=r"kernel_size 6 is larger than the padded input 4 \+ 2\*0 = 4"):
        cnnlib.conv_output_shape(4, 6)
    with pytest.raises(ValueError, match="kernel_size 3 is larger .* on axis 1"):
        cnnlib.conv_output_shape((5, 2), 3)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        cnnlib.conv_output_shape(8, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        cnnlib.conv_output_shape(8, 3, padding=-1)
    with pytest.raises(ValueError, match="input_size must be >= 1"):
        cnnlib.conv_output_shape(0, 1)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair of ints"):
        cnnlib.conv_output_shape(8, 2.5)


# --------------------------------------------------------------------------------------------
# Receptive fields.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers, r",
    [
        ([], 1),
        ([(3, 1)], 3),
        ([(3, 1), (3, 1)], 5),  # two 3x3 convolutions see as much as one 5x5
        ([(3, 1)] * 3, 7),
        ([(3, 2), (3, 1)], 7),  # the second layer's steps are 2 input pixels apart: 3 + 2*2
        ([(3, 1), (3, 2)], 5),  # a stride in the last layer does not widen its own view
        ([(2, 2), (2, 2), (2, 2)], 8),  # three 2x2 poolings: 1 + 1 + 2 + 4
        ([(5, 1), (2, 2), (5, 1), (2, 2)], 16),  # LeNet's two conv+pool stages
        ([(1, 1), (1, 4)], 1),
        ([(1, 2), (2, 1)], 3),  # sees input pixels 0 and 2 only, but spans 3
        ([(3, 1, 2)], 5),  # a 3x3 kernel with dilation 2 spans 5
        ([(3, 1, 1), (3, 1, 2), (3, 1, 4)], 15),  # dilations 1, 2, 4: 1 + 2 + 4 + 8, growing exponentially
        ([(3, 2), (3, 1, 2)], 11),  # d(k-1) times the jump: 3 + 2*2*2
        ([(3, 1, 1)], 3),  # an explicit dilation of 1 is the plain pair
    ],
)
def test_receptive_field_hand_cases(layers, r):
    assert cnnlib.receptive_field(layers) == r


def measured_receptive_field(layers) -> int:
    """Measure it: the gradient of output unit (0, 0) of a stack of all-ones convolutions with
    respect to the input is non-zero exactly where that unit looks. The receptive field is the
    extent of that region: a kernel narrower than the stride before it leaves holes inside it
    (1x1 stride 2, then 2x2: the unit sees input pixels 0 and 2, a field of 3)."""
    r = cnnlib.receptive_field(layers)
    X = torch.ones(1, 1, r + 5, r + 5, dtype=torch.float64, requires_grad=True)  # room to spare
    Y = X
    for k, s, *d in layers:
        Y = cnnlib.conv2d(Y, torch.ones(1, 1, k, k, dtype=torch.float64), stride=s, dilation=d[0] if d else 1)
    Y[0, 0, 0, 0].backward()
    seen = X.grad[0, 0] != 0
    rows = seen.any(dim=1).nonzero().flatten()
    cols = seen.any(dim=0).nonzero().flatten()
    assert rows.tolist() == cols.tolist()  # square kernels see a square region
    assert rows[0] == 0  # it starts at the unit's own corner
    if all(k >= s and (len(rest) == 0 or rest[0] == 1) for k, s, *rest in layers):  # no holes in the extent
        assert int(seen.sum()) == len(rows) ** 2 == (int(rows[-1]) + 1) ** 2
    return int(rows[-1]) + 1


@given(layers=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3)), min_size=1, max_size=4))
def test_receptive_field_matches_measurement(layers):
    assert measured_receptive_field(layers) == cnnlib.receptive_field(layers)


@given(layers=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(1, 3)), min_size=1, max_size=3))
def test_receptive_field_with_dilation_matches_measurement(layers):
    # Each dilated layer adds d*(k-1) times the jump: measured through cnnlib.conv2d(dilation=).
    assert measured_receptive_field(layers) == cnnlib.receptive_field(layers)


def test_receptive_field_errors():
    with pytest.raises(TypeError, match="layers must be a sequence of"):
        cnnlib.receptive_field("33")
    with pytest.raises(TypeError, match="layers must be a sequence of"):
        cnnlib.receptive_field(3)
    with pytest.raises(TypeError, match=r"layers\[1\] must be a \(kernel, stride\) pair of ints"):
        cnnlib.receptive_field([(3, 1), (3,)])
    with pytest.raises(ValueError, match=r"layers\[0\] must have kernel >= 1 and stride >= 1"):
        cnnlib.receptive_field([(3, 0)])
    with pytest.raises(ValueError, match=r"layers\[1\] must have .*dilation >= 1\), got \(3, 1, 0\)"):
        cnnlib.receptive_field([(3, 1), (3, 1, 0)])
    with pytest.raises(TypeError, match=r"layers\[0\] must be .* or a \(kernel, stride, dilation\) triple"):
        cnnlib.receptive_field([(3, 1, 2, 1)])


# --------------------------------------------------------------------------------------------
# Parameter counts.
# --------------------------------------------------------------------------------------------


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_fc_param_count_of_a_megapixel_layer():
    # A 300x300 image into 10,000 hidden units: about a billion parameters.
    assert cnnlib.fc_param_count((300, 300), 10_000) == 900_010_000
    assert cnnlib.fc_param_count(90_000, 10_000, bias=False) == 900_000_000


@pytest.mark.parametrize("n_in, n_out, bias", [(784, 256, True), (400, 120, True), (7, 3, False), ((3, 4), 5, True)])
def test_fc_param_count_matches_nn_Linear(n_in, n_out, bias):
    flat = math.prod(n_in) if isinstance(n_in, tuple) else n_in
    assert cnnlib.fc_param_count(n_in, n_out, bias=bias) == numel(torch.nn.Linear(flat, n_out, bias=bias))


@pytest.mark.parametrize(
    "c_in, c_out, k, bias",
    [(1, 6, 5, True), (6, 16, 5, True), (3, 64, 3, False), (64, 32, 1, True), (2, 3, (3, 5), True),
     (5, 7, (1, 2), False)],
)
def test_conv_param_count_matches_nn_Conv2d(c_in, c_out, k, bias):
    assert cnnlib.conv_param_count(c_in, c_out, k, bias=bias) == numel(torch.nn.Conv2d(c_in, c_out, k, bias=bias))


def test_conv_param_count_does_not_depend_on_image_size():
    # The 300x300 image of the FC example, through a 3x3 conv to 64 channels: 640 parameters.
    assert cnnlib.conv_param_count(1, 64, 3) == 640


def test_param_count_errors():
    with pytest.raises(ValueError, match="in_features must be positive"):
        cnnlib.fc_param_count(0, 10)
    with pytest.raises(ValueError, match="in_features must be positive"):
        cnnlib.fc_param_count((28, 0), 10)
    with pytest.raises(TypeError, match="out_features must be an int or a shape tuple"):
        cnnlib.fc_param_count(10, 2.0)
    with pytest.raises(ValueError, match="out_channels must be positive"):
        cnnlib.conv_param_count(3, 0, 3)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        cnnlib.conv_param_count(3, 4, 0)
    with pytest.raises(TypeError, match="in_channels must be an int or a shape tuple"):
        cnnlib.conv_param_count(True, 4, 3)


@pytest.mark.parametrize(
    "c_in, c_out, k, groups, bias",
    [(32, 32, 3, 32, False), (32, 64, 3, 32, True), (12, 6, 5, 3, True), (8, 8, (3, 1), 2, False), (4, 4, 1, 1, True)],
)
def test_grouped_conv_param_count_matches_nn_Conv2d(c_in, c_out, k, groups, bias):
    conv = torch.nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias)
    assert cnnlib.shapes.conv_param_count(c_in, c_out, k, bias=bias, groups=groups) == numel(conv)


def test_depthwise_separable_count_by_hand():
    # 3x3 depthwise on 256 channels plus a 1x1 to 256: 256*9 + 256*256, against 256*256*9.
    separable = cnnlib.shapes.conv_param_count(256, 256, 3, bias=False, groups=256) + cnnlib.conv_param_count(
        256, 256, 1, bias=False)
    assert separable == 2_304 + 65_536
    assert cnnlib.conv_param_count(256, 256, 3, bias=False) == 589_824


def measured_macs(c_in, c_out, k, n, groups) -> int:
    """Products counted by running the conv on an all-ones input in float64:
    every output of an all-ones input and all-ones weights is the number of products it sums."""
    conv = torch.nn.Conv2d(c_in, c_out, k, groups=groups, bias=False).double()
    torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        return int(conv(torch.ones(1, c_in, n, n, dtype=torch.float64)).sum().item())


@pytest.mark.parametrize("c_in, c_out, k, n, groups",
                         [(1, 6, 5, 28, 1), (6, 16, 5, 14, 1), (8, 8, 3, 9, 8), (6, 4, 3, 7, 2)])
def test_conv_macs_matches_products_summed(c_in, c_out, k, n, groups):
    out = cnnlib.conv_output_shape(n, k)
    assert cnnlib.shapes.conv_macs(c_in, c_out, k, out, groups=groups) == measured_macs(c_in, c_out, k, n, groups)


def test_conv_macs_of_lenet_first_layer():
    # 6 maps of 28x28, each output a sum of 25 products.
    assert cnnlib.shapes.conv_macs(1, 6, 5, 28) == 6 * 28 * 28 * 25 == 117_600
    assert cnnlib.shapes.conv_macs(3, 6, (3, 5), (4, 2)) == 6 * 4 * 2 * 3 * 15


def test_groups_and_output_size_errors():
    with pytest.raises(ValueError, match="groups must divide in_channels and out_channels"):
        cnnlib.shapes.conv_param_count(6, 4, 3, groups=3)
    with pytest.raises(ValueError, match="groups must be a positive int"):
        cnnlib.shapes.conv_param_count(6, 6, 3, groups=0)
    with pytest.raises(TypeError, match="groups must be a positive int"):
        cnnlib.shapes.conv_param_count(6, 6, 3, groups=2.0)
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        cnnlib.shapes.conv_macs(3, 4, 3, 0)
    with pytest.raises(TypeError, match="output_size"):
        cnnlib.shapes.conv_macs(3, 4, 3, "28")
