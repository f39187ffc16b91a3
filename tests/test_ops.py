"""cnnlib.ops against hand-computed cases and torch.nn.functional.

Every comparison goes through assert_close, which checks shape, dtype and device before values.
References are computed by torch in float64 from the same input values, so a float32 op is
judged against the exact answer for its inputs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES, DTYPES, assert_close
from hypothesis import given
from hypothesis import strategies as st

import cnnlib

FLOATS = st.sampled_from([torch.float32, torch.float64])
SEEDS = st.integers(0, 2**31 - 1)


def randn(shape, seed: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Reproducible normal values: the seed is drawn by hypothesis, so a failing case replays."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def distinct(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Values without ties (a random permutation of 0..n-1, scaled), so max pooling's argmax is unique."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n, generator=g).to(torch.float64) / n - 0.5).reshape(shape).to(dtype)


def maybe_pair(draw, a: int, b: int):
    """The int a when a == b and the draw says so, else the pair (a, b): both forms get exercised."""
    return a if a == b and draw(st.booleans()) else (a, b)


def X09(dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.arange(9.0, dtype=dtype, device=device).reshape(3, 3)


def K0123(dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=dtype, device=device)


def T(values, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Hand-computed cases: one per op, worked out on paper.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_corr2d_worked_example(dtype):
    # Y[0,0] = 0*0 + 1*1 + 3*2 + 4*3 = 19, and so on.
    assert_close(cnnlib.corr2d(X09(dtype), K0123(dtype)), T([[19, 25], [37, 43]], dtype))


def test_convolve2d_hand_case():
    # The kernel flipped on both axes is [[3, 2], [1, 0]]: Y[0,0] = 0*3 + 1*2 + 3*1 + 4*0 = 5.
    assert_close(cnnlib.convolve2d(X09(), K0123()), T([[5, 11], [23, 29]]))


def test_corr2d_multi_in_hand_case():
    X = torch.stack([X09(), X09() + 1])  # (2, 3, 3)
    K = torch.stack([K0123(), K0123() + 1])  # (2, 2, 2)
    # Channel 0 gives [[19, 25], [37, 43]], channel 1 gives [[37, 47], [67, 77]].
    assert_close(cnnlib.corr2d_multi_in(X, K), T([[56, 72], [104, 120]]))


def test_corr2d_multi_in_out_hand_case():
    X = torch.stack([X09(), X09() + 1])  # (2, 3, 3)
    K = torch.stack([K0123(), K0123() + 1])  # (2, 2, 2)
    K = torch.stack([K, K + 1, K + 2])  # (3, 2, 2, 2)
    # Adding 1 to every one of the 8 kernel entries adds the window sums of both channels:
    # window sums are [[8, 12], [20, 24]] for channel 0 and [[12, 16], [24, 28]] for channel 1.
    expected = T([[[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]])
    assert_close(cnnlib.corr2d_multi_in_out(X, K), expected)


def test_corr2d_multi_in_out_1x1_hand_case():
    X = T([[[1, 2]], [[3, 4]]])  # (2, 1, 2)
    K = T([[1, 10], [2, -1]]).reshape(2, 2, 1, 1)  # output 0 = X0 + 10 X1, output 1 = 2 X0 - X1
    assert_close(cnnlib.corr2d_multi_in_out_1x1(X, K), T([[[31, 42]], [[-1, 0]]]))


def test_conv2d_stride_padding_hand_case():
    X = X09().reshape(1, 1, 3, 3)
    W = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    # Padded to 5x5, 2x2 windows every 2 pixels: each window holds 1, 2, 2 and 4 real pixels.
    assert_close(cnnlib.conv2d(X, W, padding=1, stride=2), T([[[[0, 3], [9, 24]]]]))
    assert_close(cnnlib.conv2d(X, W, T([1.0]), padding=1, stride=2), T([[[[1, 4], [10, 25]]]]))
    # Unequal strides and paddings: padding (0, 1) makes 3x5, stride (1, 3) leaves a 2x2 output
    # whose windows hold columns (pad, 0) and (2, pad) of rows (0, 1) and (1, 2).
    assert_close(cnnlib.conv2d(X, W, padding=(0, 1), stride=(1, 3)), T([[[[0 + 3, 2 + 5], [3 + 6, 5 + 8]]]]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_dilation_hand_case(dtype):
    X = torch.arange(16.0, dtype=dtype).reshape(1, 1, 4, 4)
    W = torch.ones(1, 1, 2, 2, dtype=dtype)
    # Taps 2 apart: Y[i, j] = X[i, j] + X[i, j+2] + X[i+2, j] + X[i+2, j+2]; a span of 3, so 2x2 outputs.
    assert_close(cnnlib.conv2d(X, W, dilation=2), T([[[[20, 24], [36, 40]]]], dtype))
    # Dilation (2, 1) on rows only: Y[i, j] = X[i, j] + X[i, j+1] + X[i+2, j] + X[i+2, j+1].
    assert_close(cnnlib.conv2d(X, W, dilation=(2, 1)), T([[[[18, 22, 26], [34, 38, 42]]]], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_groups_hand_case(dtype):
    X = torch.stack([X09(dtype), 10 * X09(dtype)])  # (2, 3, 3)
    # Depthwise: one 1x1 kernel per channel, so channel 0 is doubled and channel 1 negated, never mixed.
    W = T([2.0, -1.0], dtype).reshape(2, 1, 1, 1)
    assert_close(cnnlib.conv2d(X, W, groups=2), torch.stack([2 * X09(dtype), -10 * X09(dtype)]))
    # Two groups of one channel, two outputs each: outputs 0-1 see channel 0 only, outputs 2-3 channel 1 only.
    W = T([1.0, 3.0, 1.0, 3.0], dtype).reshape(4, 1, 1, 1)
    expected = torch.stack([X09(dtype), 3 * X09(dtype), 10 * X09(dtype), 30 * X09(dtype)])
    assert_close(cnnlib.conv2d(X, W, groups=2), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool2d_worked_examples(dtype):
    assert_close(cnnlib.pool2d(X09(dtype), 2, stride=1, mode="max"), T([[4, 5], [7, 8]], dtype))
    assert_close(cnnlib.pool2d(X09(dtype), 2, stride=1, mode="avg"), T([[2, 3], [5, 6]], dtype))


def test_pool2d_padding_hand_case():
    # Padded with one ring; 2x2 windows every 2 pixels hold 1, 2, 2 and 4 real pixels.
    assert_close(cnnlib.pool2d(X09(), 2, stride=2, padding=1, mode="max"), T([[0, 2], [6, 8]]))
    # Average pooling counts the zero padding: divisors are always 4.
    assert_close(cnnlib.pool2d(X09(), 2, stride=2, padding=1, mode="avg"), T([[0, 0.75], [2.25, 6]]))
    # The stride defaults to the window: 2x2 windows on 0..8 leave one window.
    assert_close(cnnlib.pool2d(X09(), 2), T([[4.0]]))


def test_pool2d_max_padding_never_wins_on_negative_input():
    X = -1 - X09()  # all values negative: a zero-padded max would wrongly return 0
    assert_close(cnnlib.pool2d(X, 3, stride=1, padding=1, mode="max")[0, 0], T(-1.0))


def test_global_avg_pool2d_hand_case():
    X = torch.stack([X09(), X09() + 9])  # (2, 3, 3): means 4 and 13
    assert_close(cnnlib.global_avg_pool2d(X), T([[[4.0]], [[13.0]]]))
    assert_close(cnnlib.global_avg_pool2d(X.unsqueeze(0)), T([[[[4.0]], [[13.0]]]]))


def test_pad2d_hand_case():
    X = T([[1, 2], [3, 4]])
    assert_close(cnnlib.pad2d(X, (1, 0)), T([[0, 0], [1, 2], [3, 4], [0, 0]]))
    assert_close(cnnlib.pad2d(X, 1), T([[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]]))
    assert_close(cnnlib.pad2d(X, 0), X)


def test_corr2d_padded_hand_case():
    # The conv2d hand case on one channel: padding 1, stride 2, a 2x2 kernel of ones.
    ones = torch.ones(2, 2, dtype=torch.float64)
    assert_close(cnnlib.corr2d_padded(X09(), ones, padding=1, stride=2), T([[0, 3], [9, 24]]))
    assert_close(cnnlib.corr2d_padded(X09(), K0123()), T([[19, 25], [37, 43]]))  # defaults: plain corr2d


def test_conv_as_matrix_hand_case():
    # A 1x2 kernel [a, b] = [2, 3] on a 2x3 input: 2x2 outputs, each row holds a and b side by side.
    M = cnnlib.conv_as_matrix(T([[2, 3]]), (2, 3))
    expected = T([
        [2, 3, 0, 0, 0, 0],
        [0, 2, 3, 0, 0, 0],
        [0, 0, 0, 2, 3, 0],
        [0, 0, 0, 0, 2, 3],
    ])
    assert_close(M, expected)
    # The worked example as a matrix product: 9 inputs, 4 outputs, 4 weights per row.
    M = cnnlib.conv_as_matrix(K0123(), 3)
    assert M.shape == (4, 9) and (M != 0).sum(dim=1).tolist() == [3, 3, 3, 3]  # K[0, 0] = 0
    assert_close(M @ X09().flatten(), T([19, 25, 37, 43]))


# --------------------------------------------------------------------------------------------
# Against torch.nn.functional, with drawn shapes, strides, paddings and channel counts.
# --------------------------------------------------------------------------------------------


@st.composite
def corr_cases(draw, max_side: int = 6):
    """(H, W, kh, kw): small, because corr2d is the per-pixel teaching loop."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(kh, max_side)), draw(st.integers(kw, max_side))
    return H, W, kh, kw


@given(case=corr_cases(), dtype=FLOATS, seed=SEEDS)
def test_corr2d_matches_F_conv2d(case, dtype, seed):
    H, W, kh, kw = case
    X, K = randn((H, W), seed, dtype), randn((kh, kw), seed + 1, dtype)
    expected = F.conv2d(X.double()[None, None], K.double()[None, None])[0, 0]
    assert_close(cnnlib.corr2d(X, K), expected, dtype=dtype)


@given(case=corr_cases(), dtype=FLOATS, seed=SEEDS)
def test_convolve2d_matches_F_conv2d_with_flipped_kernel(case, dtype, seed):
    H, W, kh, kw = case
    X, K = randn((H, W), seed, dtype), randn((kh, kw), seed + 1, dtype)
    expected = F.conv2d(X.double()[None, None], K.double().flip(0, 1)[None, None])[0, 0]
    assert_close(cnnlib.convolve2d(X, K), expected, dtype=dtype)


@given(case=corr_cases(max_side=5), C=st.integers(1, 3), dtype=FLOATS, seed=SEEDS)
def test_corr2d_multi_in_matches_F_conv2d(case, C, dtype, seed):
    H, W, kh, kw = case
    X, K = randn((C, H, W), seed, dtype), randn((C, kh, kw), seed + 1, dtype)
    expected = F.conv2d(X.double()[None], K.double()[None])[0, 0]  # one output channel
    assert_close(cnnlib.corr2d_multi_in(X, K), expected, dtype=dtype)


@given(case=corr_cases(max_side=5), C=st.integers(1, 3), C_out=st.integers(1, 3), dtype=FLOATS, seed=SEEDS)
def test_corr2d_multi_in_out_matches_F_conv2d(case, C, C_out, dtype, seed):
    H, W, kh, kw = case
    X, K = randn((C, H, W), seed, dtype), randn((C_out, C, kh, kw), seed + 1, dtype)
    expected = F.conv2d(X.double()[None], K.double())[0]
    assert_close(cnnlib.corr2d_multi_in_out(X, K), expected, dtype=dtype)


@given(
    C=st.integers(1, 6), C_out=st.integers(1, 6), H=st.integers(1, 8), W=st.integers(1, 8),
    dtype=FLOATS, seed=SEEDS,
)
def test_corr2d_multi_in_out_1x1_matches_F_conv2d(C, C_out, H, W, dtype, seed):
    X, K = randn((C, H, W), seed, dtype), randn((C_out, C, 1, 1), seed + 1, dtype)
    expected = F.conv2d(X.double()[None], K.double())[0]
    assert_close(cnnlib.corr2d_multi_in_out_1x1(X, K), expected, dtype=dtype)


@st.composite
def conv_cases(draw):
    """Arguments for conv2d and nn.Conv2d: batch, channels, sizes, kernel, stride, padding, bias."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H = draw(st.integers(max(1, kh - 2 * ph), 12))
    W = draw(st.integers(max(1, kw - 2 * pw), 12))
    return dict(
        N=draw(st.integers(1, 3)), C=draw(st.integers(1, 4)), F=draw(st.integers(1, 4)),
        H=H, W=W, kernel=(kh, kw),
        stride=maybe_pair(draw, sh, sw), padding=maybe_pair(draw, ph, pw),
        bias=draw(st.booleans()), batched=draw(st.booleans()),
    )


def conv_inputs(case, seed, dtype=torch.float64, device="cpu"):
    shape = (case["N"], case["C"], case["H"], case["W"]) if case["batched"] else (case["C"], case["H"], case["W"])
    X = randn(shape, seed, dtype, device)
    Wt = randn((case["F"], case["C"], *case["kernel"]), seed + 1, dtype, device)
    b = randn((case["F"],), seed + 2, dtype, device) if case["bias"] else None
    return X, Wt, b


@given(case=conv_cases(), dtype=FLOATS, seed=SEEDS)
def test_conv2d_matches_F_conv2d(case, dtype, seed):
    X, Wt, b = conv_inputs(case, seed, dtype)
    expected = F.conv2d(
        X.double(), Wt.double(), None if b is None else b.double(), stride=case["stride"], padding=case["padding"]
    )
    Y = cnnlib.conv2d(X, Wt, b, stride=case["stride"], padding=case["padding"])
    assert_close(Y, expected, dtype=dtype)


@st.composite
def dilated_grouped_cases(draw):
    """conv_cases with a dilation and groups: C = G * C/G input channels, F = G * F/G outputs."""
    case = draw(conv_cases())
    kh, kw = case["kernel"]
    G = draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = (case["padding"],) * 2 if isinstance(case["padding"], int) else case["padding"]
    case.update(
        C=G * draw(st.integers(1, 2)), F=G * draw(st.integers(1, 2)), groups=G,
        dilation=maybe_pair(draw, dh, dw),
        H=draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 14)),  # spans reach 3*(5-1)+1 = 13
        W=draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 14)),
    )
    return case


def grouped_inputs(case, seed, dtype=torch.float64, device="cpu"):
    X, _, b = conv_inputs(case, seed, dtype, device)
    Wt = randn((case["F"], case["C"] // case["groups"], *case["kernel"]), seed + 1, dtype, device)
    return X, Wt, b


def conv_kwargs(case):
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])


@given(case=dilated_grouped_cases(), dtype=FLOATS, seed=SEEDS)
def test_conv2d_dilation_groups_match_F_conv2d(case, dtype, seed):
    X, Wt, b = grouped_inputs(case, seed, dtype)
    expected = F.conv2d(X.double(), Wt.double(), None if b is None else b.double(), **conv_kwargs(case))
    assert_close(cnnlib.conv2d(X, Wt, b, **conv_kwargs(case)), expected, dtype=dtype)


@given(case=dilated_grouped_cases(), seed=SEEDS)
def test_conv2d_dilation_groups_gradients_match_F_conv2d(case, seed):
    X, Wt, b = grouped_inputs(case, seed)
    tensors = (X, Wt) if b is None else (X, Wt, b)
    ours = grads(lambda *t: cnnlib.conv2d(*t, **conv_kwargs(case)), *tensors, seed=seed + 3)
    theirs = grads(lambda *t: F.conv2d(*t, **conv_kwargs(case)), *tensors, seed=seed + 3)
    for name, a, e in zip(("dL/dX", "dL/dW", "dL/db"), ours, theirs):
        assert_close(a, e, what=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_dilation_groups_large_batch_uses_chunks(dtype):
    # Enough images that the engine works a few at a time (the chunked paths), forward and backward.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 6, 20, 20, generator=g, dtype=torch.float64)
    W = torch.randn(9, 2, 3, 3, generator=g, dtype=torch.float64)
    kw = dict(padding=2, dilation=2, groups=3)
    assert_close(cnnlib.conv2d(X.to(dtype), W.to(dtype), **kw), F.conv2d(X, W, **kw), dtype=dtype)
    # Gradients in float64: dL/dW sums 16,000 products, beyond float32's per-value tolerance.
    ours = grads(lambda x, w: cnnlib.conv2d(x, w, **kw), X, W, seed=1)
    theirs = grads(lambda x, w: F.conv2d(x, w, **kw), X, W, seed=1)
    assert_close(ours[0], theirs[0], what="dL/dX")
    assert_close(ours[1], theirs[1], what="dL/dW")


def test_Conv2d_layer_with_dilation_and_groups_matches_nn_Conv2d():
    kwargs = dict(kernel_size=3, stride=2, padding=2, dilation=2, groups=4, bias=True)
    theirs = torch.nn.Conv2d(8, 12, **kwargs).double()
    ours = cnnlib.Conv2d(8, 12, **kwargs).double()
    assert ours.weight.shape == theirs.weight.shape == (12, 2, 3, 3)
    ours.load_state_dict(theirs.state_dict())
    X1 = randn((2, 8, 11, 9), 0).requires_grad_(True)
    X2 = X1.detach().clone().requires_grad_(True)
    Y1, Y2 = ours(X1), theirs(X2)
    assert_close(Y1, Y2, what="forward")
    Y1.sum().backward()
    Y2.sum().backward()
    assert_close(X1.grad, X2.grad, what="input grad")
    assert_close(ours.weight.grad, theirs.weight.grad, what="weight grad")
    assert "dilation=(2, 2), groups=4" in repr(ours)
    assert "dilation" not in repr(cnnlib.Conv2d(2, 2, 3)) and "groups" not in repr(cnnlib.Conv2d(2, 2, 3))
    # The default initialisation's bias bound uses the fan-in of one group: 1/sqrt(2*3*3).
    bound = 1 / (2 * 3 * 3) ** 0.5
    fresh = cnnlib.Conv2d(8, 12, **kwargs)
    assert fresh.bias.abs().max() <= bound and fresh.weight.abs().max() <= bound
    with pytest.raises(ValueError, match="groups must divide in_channels and out_channels"):
        cnnlib.Conv2d(8, 6, 3, groups=4)


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))  # torch allows at most half
    H = draw(st.integers(max(1, kh - 2 * ph), 10))
    W = draw(st.integers(max(1, kw - 2 * pw), 10))
    lead = draw(st.sampled_from([(), (3,), (2, 3)]))  # (H, W), (C, H, W), (N, C, H, W)
    stride = None if draw(st.booleans()) else maybe_pair(draw, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return dict(
        shape=(*lead, H, W), pool_size=maybe_pair(draw, kh, kw), stride=stride,
        padding=maybe_pair(draw, ph, pw), mode=draw(st.sampled_from(["max", "avg"])),
    )


def torch_pool(X, case):
    """torch's pooling of X (any of 2, 3, 4 dims) with the case's arguments, in X's dtype."""
    f = F.max_pool2d if case["mode"] == "max" else F.avg_pool2d
    stride = case["pool_size"] if case["stride"] is None else case["stride"]
    X3 = X.unsqueeze(0) if X.dim() == 2 else X  # torch pools (C, H, W) or (N, C, H, W)
    Y = f(X3, case["pool_size"], stride=stride, padding=case["padding"])
    return Y[0] if X.dim() == 2 else Y


def cnnlib_pool(X, case):
    return cnnlib.pool2d(X, case["pool_size"], stride=case["stride"], padding=case["padding"], mode=case["mode"])


@given(case=pool_cases(), dtype=FLOATS, seed=SEEDS)
def test_pool2d_matches_F_pooling(case, dtype, seed):
    X = randn(case["shape"], seed, dtype)
    assert_close(cnnlib_pool(X, case), torch_pool(X.double(), case), dtype=dtype)


@given(
    lead=st.sampled_from([(2,), (2, 3)]), H=st.integers(1, 9), W=st.integers(1, 9), dtype=FLOATS, seed=SEEDS
)
def test_global_avg_pool2d_matches_F_adaptive_avg_pool2d(lead, H, W, dtype, seed):
    X = randn((*lead, H, W), seed, dtype)
    assert_close(cnnlib.global_avg_pool2d(X), F.adaptive_avg_pool2d(X.double(), 1), dtype=dtype)


@given(
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=4), ph=st.integers(0, 3), pw=st.integers(0, 3),
    dtype=FLOATS, seed=SEEDS,
)
def test_pad2d_matches_F_pad(shape, ph, pw, dtype, seed):
    X = randn(tuple(shape), seed, dtype)
    assert_close(cnnlib.pad2d(X, (ph, pw)), F.pad(X, (pw, pw, ph, ph)))


@given(case=conv_cases(), dtype=FLOATS, seed=SEEDS)
def test_corr2d_padded_matches_F_conv2d(case, dtype, seed):
    kh, kw = case["kernel"]
    X, K = randn((case["H"], case["W"]), seed, dtype), randn((kh, kw), seed + 1, dtype)
    expected = F.conv2d(X.double()[None, None], K.double()[None, None], stride=case["stride"], padding=case["padding"])
    Y = cnnlib.corr2d_padded(X, K, padding=case["padding"], stride=case["stride"])
    assert_close(Y, expected[0, 0], dtype=dtype)


@given(case=corr_cases(max_side=7), dtype=FLOATS, seed=SEEDS)
def test_conv_as_matrix_times_input_is_the_convolution(case, dtype, seed):
    H, W, kh, kw = case
    X, K = randn((H, W), seed, dtype), randn((kh, kw), seed + 1, dtype)
    M = cnnlib.conv_as_matrix(K, (H, W))
    assert M.shape == ((H - kh + 1) * (W - kw + 1), H * W) and M.dtype == dtype
    expected = F.conv2d(X.double()[None, None], K.double()[None, None]).flatten()
    assert_close(M @ X.flatten(), expected, dtype=dtype)
    # Every row holds each kernel weight once: the weights are shared across output positions.
    assert_close(M.sum(dim=1), K.double().sum().expand(M.shape[0]), dtype=dtype)


# --------------------------------------------------------------------------------------------
# The teaching loops and the vectorized ops agree.
# --------------------------------------------------------------------------------------------


@given(case=corr_cases(), seed=SEEDS)
def test_corr2d_loop_equals_vectorized_conv2d(case, seed):
    H, W, kh, kw = case
    X, K = randn((H, W), seed), randn((kh, kw), seed + 1)
    assert_close(cnnlib.corr2d(X, K), cnnlib.conv2d(X[None, None], K[None, None])[0, 0])


@given(case=corr_cases(max_side=5), C=st.integers(1, 3), C_out=st.integers(1, 3), seed=SEEDS)
def test_corr2d_multi_in_out_loop_equals_vectorized_conv2d(case, C, C_out, seed):
    H, W, kh, kw = case
    X, K = randn((C, H, W), seed), randn((C_out, C, kh, kw), seed + 1)
    assert_close(cnnlib.corr2d_multi_in_out(X, K), cnnlib.conv2d(X, K))  # conv2d takes unbatched (C, H, W)


@given(C=st.integers(1, 4), C_out=st.integers(1, 4), H=st.integers(1, 5), W=st.integers(1, 5), seed=SEEDS)
def test_1x1_matmul_equals_corr2d_multi_in_out(C, C_out, H, W, seed):
    X, K = randn((C, H, W), seed), randn((C_out, C, 1, 1), seed + 1)
    assert_close(cnnlib.corr2d_multi_in_out_1x1(X, K), cnnlib.corr2d_multi_in_out(X, K))


# --------------------------------------------------------------------------------------------
# Gradients agree with torch's.
# --------------------------------------------------------------------------------------------


def grads(f, *tensors, seed: int):
    """Gradients of sum(f(*tensors) * G) for a fixed random upstream gradient G."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    Y = f(*leaves)
    G = randn(Y.shape, seed, Y.dtype, Y.device)
    return torch.autograd.grad((Y * G).sum(), leaves)


@given(case=corr_cases(max_side=5), seed=SEEDS)
def test_corr2d_gradients_match_F_conv2d(case, seed):
    H, W, kh, kw = case
    X, K = randn((H, W), seed), randn((kh, kw), seed + 1)
    ours = grads(cnnlib.corr2d, X, K, seed=seed + 2)
    theirs = grads(lambda x, k: F.conv2d(x[None, None], k[None, None])[0, 0], X, K, seed=seed + 2)
    assert_close(ours[0], theirs[0], what="dL/dX")
    assert_close(ours[1], theirs[1], what="dL/dK")


@given(case=conv_cases(), seed=SEEDS)
def test_Conv2d_layer_gradients_match_nn_Conv2d(case, seed):
    kwargs = dict(kernel_size=case["kernel"], stride=case["stride"], padding=case["padding"], bias=case["bias"])
    theirs = torch.nn.Conv2d(case["C"], case["F"], **kwargs).double()
    ours = cnnlib.Conv2d(case["C"], case["F"], **kwargs).double()
    ours.load_state_dict(theirs.state_dict())  # same parameter names, same shapes
    X, _, _ = conv_inputs(case, seed)
    X1, X2 = X.clone().requires_grad_(True), X.clone().requires_grad_(True)
    Y1, Y2 = ours(X1), theirs(X2)
    assert_close(Y1, Y2, what="forward")
    G = randn(Y1.shape, seed + 3)
    (Y1 * G).sum().backward()
    (Y2 * G).sum().backward()
    assert_close(X1.grad, X2.grad, what="input grad")
    assert_close(ours.weight.grad, theirs.weight.grad, what="weight grad")
    if case["bias"]:
        assert_close(ours.bias.grad, theirs.bias.grad, what="bias grad")
    else:
        assert ours.bias is None


@given(case=pool_cases(), seed=SEEDS)
def test_pool2d_gradients_match_F_pooling(case, seed):
    X = distinct(case["shape"], seed)  # tie-free: each window's max is unique
    ours = grads(lambda x: cnnlib_pool(x, case), X, seed=seed + 1)
    theirs = grads(lambda x: torch_pool(x, case), X, seed=seed + 1)
    assert_close(ours[0], theirs[0], what=f"{case['mode']} pooling input grad")


def test_gradcheck_conv2d_and_pool2d():
    # Finite differences against autograd, on top of the comparisons with torch above.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(2, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: cnnlib.conv2d(x, w, b, stride=(2, 1), padding=(1, 0)), (X, W, b))
    assert torch.autograd.gradcheck(lambda x: cnnlib.pool2d(x, 3, stride=2, padding=1, mode="avg"), (X,))


def test_gradcheck_and_gradgradcheck_dilated_grouped_conv2d():
    # The backward is itself built from differentiable ops (a grouped, dilated conv2d among them),
    # so second derivatives agree with finite differences too.
    g = torch.Generator().manual_seed(1)
    X = torch.randn(2, 4, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(6, 2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return cnnlib.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(2, 3), groups=2)

    assert torch.autograd.gradcheck(f, (X, W, b))
    assert torch.autograd.gradgradcheck(f, (X, W, b))


# --------------------------------------------------------------------------------------------
# Every op in float32 and float64, on every device: output on the input's device and dtype.
# --------------------------------------------------------------------------------------------


def _op_cases():
    """name -> (function of (dtype, device) returning (actual, float64 reference))."""

    def make(shapes, device, dtype, seed=0):
        return [randn(s, seed + i, dtype, device) for i, s in enumerate(shapes)]

    def corr2d(dtype, device):
        X, K = make([(6, 7), (3, 2)], device, dtype)
        return cnnlib.corr2d(X, K), F.conv2d(X.double()[None, None], K.double()[None, None])[0, 0]

    def convolve2d(dtype, device):
        X, K = make([(6, 7), (3, 2)], device, dtype)
        return cnnlib.convolve2d(X, K), F.conv2d(X.double()[None, None], K.double().flip(0, 1)[None, None])[0, 0]

    def corr2d_multi_in(dtype, device):
        X, K = make([(2, 5, 4), (2, 2, 3)], device, dtype)
        return cnnlib.corr2d_multi_in(X, K), F.conv2d(X.double()[None], K.double()[None])[0, 0]

    def corr2d_multi_in_out(dtype, device):
        X, K = make([(2, 5, 4), (3, 2, 2, 3)], device, dtype)
        return cnnlib.corr2d_multi_in_out(X, K), F.conv2d(X.double()[None], K.double())[0]

    def corr2d_multi_in_out_1x1(dtype, device):
        X, K = make([(3, 5, 4), (2, 3, 1, 1)], device, dtype)
        return cnnlib.corr2d_multi_in_out_1x1(X, K), F.conv2d(X.double()[None], K.double())[0]

    def conv2d(dtype, device):
        X, W, b = make([(2, 3, 9, 8), (4, 3, 3, 2), (4,)], device, dtype)
        Y = cnnlib.conv2d(X, W, b, stride=(2, 1), padding=(1, 2))
        return Y, F.conv2d(X.double(), W.double(), b.double(), stride=(2, 1), padding=(1, 2))

    def conv2d_dilated_grouped(dtype, device):
        X, W, b = make([(2, 6, 9, 8), (4, 3, 3, 2), (4,)], device, dtype)
        kw = dict(stride=(1, 2), padding=(2, 1), dilation=(2, 3), groups=2)
        return cnnlib.conv2d(X, W, b, **kw), F.conv2d(X.double(), W.double(), b.double(), **kw)

    def conv2d_depthwise(dtype, device):
        X, W = make([(2, 5, 8, 8), (5, 1, 3, 3)], device, dtype)
        return cnnlib.conv2d(X, W, padding=1, groups=5), F.conv2d(X.double(), W.double(), padding=1, groups=5)

    def pool2d_max(dtype, device):
        (X,) = make([(2, 3, 7, 6)], device, dtype)
        return cnnlib.pool2d(X, 3, stride=2, padding=1, mode="max"), F.max_pool2d(X.double(), 3, 2, 1)

    def pool2d_avg(dtype, device):
        (X,) = make([(2, 3, 7, 6)], device, dtype)
        return cnnlib.pool2d(X, (2, 3), stride=(1, 2), padding=(1, 0), mode="avg"), F.avg_pool2d(
            X.double(), (2, 3), (1, 2), (1, 0)
        )

    def global_avg_pool2d(dtype, device):
        (X,) = make([(2, 3, 7, 6)], device, dtype)
        return cnnlib.global_avg_pool2d(X), F.adaptive_avg_pool2d(X.double(), 1)

    def pad2d(dtype, device):
        (X,) = make([(2, 3, 4, 5)], device, dtype)
        return cnnlib.pad2d(X, (2, 1)), F.pad(X.double(), (1, 1, 2, 2))

    def corr2d_padded(dtype, device):
        X, K = make([(6, 7), (3, 2)], device, dtype)
        Y = cnnlib.corr2d_padded(X, K, padding=(1, 2), stride=(2, 3))
        return Y, F.conv2d(X.double()[None, None], K.double()[None, None], stride=(2, 3), padding=(1, 2))[0, 0]

    def conv_as_matrix(dtype, device):
        X, K = make([(5, 4), (2, 3)], device, dtype)
        return cnnlib.conv_as_matrix(K, (5, 4)) @ X.flatten(), F.conv2d(
            X.double()[None, None], K.double()[None, None]
        ).flatten()

    return {f.__name__: f for f in (
        corr2d, convolve2d, corr2d_multi_in, corr2d_multi_in_out, corr2d_multi_in_out_1x1,
        conv2d, conv2d_dilated_grouped, conv2d_depthwise, pool2d_max, pool2d_avg, global_avg_pool2d, pad2d,
        corr2d_padded, conv_as_matrix,
    )}


OP_CASES = _op_cases()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(OP_CASES))
def test_op_keeps_dtype_and_device(op, dtype, device):
    actual, expected = OP_CASES[op](dtype, device)
    assert_close(actual, expected, dtype=dtype, device=device, what=op)


@pytest.mark.parametrize("device", DEVICES)
def test_ops_are_differentiable_on_device(device):
    X = randn((1, 2, 6, 6), 0, device=device).requires_grad_(True)
    W = randn((3, 2, 3, 3), 1, device=device).requires_grad_(True)
    Y = cnnlib.pool2d(cnnlib.conv2d(X, W, padding=1), 2, mode="max")
    cnnlib.global_avg_pool2d(Y).sum().backward()
    assert X.grad.device == X.device and W.grad.device == W.device
    assert X.grad.abs().sum() > 0 and W.grad.abs().sum() > 0


def test_conv2d_on_the_meta_device():
    # Shapes, dtype and device with no data: forward and backward, with every argument.
    meta = torch.device("meta")
    X = torch.empty(3, 6, 17, 15, device=meta, requires_grad=True)
    W = torch.empty(9, 2, 3, 2, device=meta, requires_grad=True)
    b = torch.empty(9, device=meta, requires_grad=True)
    kw = dict(stride=(2, 1), padding=(1, 3), dilation=(2, 3), groups=3)
    Y = cnnlib.conv2d(X, W, b, **kw)
    expected = F.conv2d(X, W, b, **kw)
    assert (Y.shape, Y.dtype, Y.device) == (expected.shape, expected.dtype, meta)
    dX, dW, db = torch.autograd.grad(Y.sum(), (X, W, b))
    assert (dX.shape, dW.shape, db.shape) == (X.shape, W.shape, b.shape)
    assert dX.device == dW.device == db.device == meta


# --------------------------------------------------------------------------------------------
# Bad input: a ValueError or TypeError that names the argument and what was expected.
# --------------------------------------------------------------------------------------------

Z2, Z3, Z4 = torch.zeros(4, 4), torch.zeros(2, 4, 4), torch.zeros(1, 2, 4, 4)


def test_wrong_number_of_dimensions():
    with pytest.raises(ValueError, match=r"X must have shape \(H, W\)"):
        cnnlib.corr2d(Z3, torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"K must have shape \(kh, kw\)"):
        cnnlib.corr2d(Z2, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"K must have shape \(kh, kw\)"):
        cnnlib.convolve2d(Z2, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"X must have shape \(C, H, W\)"):
        cnnlib.corr2d_multi_in(Z2, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"K must have shape \(C_out, C, kh, kw\)"):
        cnnlib.corr2d_multi_in_out(Z3, torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match=r"X must have shape \(N, C, H, W\) or \(C, H, W\)"):
        cnnlib.conv2d(Z2, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"weight must have shape \(F, C, kh, kw\)"):
        cnnlib.conv2d(Z4, torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match=r"X must have shape \(H, W\), \(C, H, W\) or \(N, C, H, W\)"):
        cnnlib.pool2d(torch.zeros(4), 2)
    with pytest.raises(ValueError, match=r"X must have shape \(N, C, H, W\) or \(C, H, W\)"):
        cnnlib.global_avg_pool2d(Z2)


def test_channel_mismatch_between_X_and_K():
    with pytest.raises(ValueError, match=r"K must have shape \(C, kh, kw\) with C = 2"):
        cnnlib.corr2d_multi_in(Z3, torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match=r"K must have shape \(C_out, 2, kh, kw\)"):
        cnnlib.corr2d_multi_in_out(Z3, torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"K must have shape \(C_out, 2, 1, 1\)"):
        cnnlib.corr2d_multi_in_out_1x1(Z3, torch.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"K must have shape \(C_out, 2, 1, 1\)"):
        cnnlib.corr2d_multi_in_out_1x1(Z3, torch.zeros(1, 2, 2, 2))  # not a 1x1 kernel
    with pytest.raises(ValueError, match=r"weight must have shape \(F, 2, kh, kw\)"):
        cnnlib.conv2d(Z4, torch.zeros(1, 3, 2, 2))


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match="kernel K height 5 is larger than the padded input height 4"):
        cnnlib.corr2d(Z2, torch.zeros(5, 1))
    with pytest.raises(ValueError, match="kernel K width 5 is larger"):
        cnnlib.convolve2d(Z2, torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"kernel width 7 is larger than the padded input width 4 \+ 2\*1 = 6"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 1, 7), padding=1)
    cnnlib.conv2d(Z4, torch.zeros(1, 2, 1, 6), padding=1)  # exactly fits: no error
    with pytest.raises(ValueError, match="pool_size height 5 is larger"):
        cnnlib.pool2d(Z2, (5, 1))


def test_pad2d_corr2d_padded_conv_as_matrix_errors():
    with pytest.raises(ValueError, match=r"X must have shape \(\.\.\., H, W\)"):
        cnnlib.pad2d(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        cnnlib.pad2d(Z2, -1)
    with pytest.raises(ValueError, match=r"X must have shape \(H, W\)"):
        cnnlib.corr2d_padded(Z3, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="kernel width 7 is larger than the padded input width 4"):
        cnnlib.corr2d_padded(Z2, torch.zeros(1, 7), padding=1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        cnnlib.corr2d_padded(Z2, torch.zeros(2, 2), stride=0)
    with pytest.raises(ValueError, match=r"K must have shape \(kh, kw\)"):
        cnnlib.conv_as_matrix(torch.zeros(1, 2, 2), (4, 4))
    with pytest.raises(ValueError, match="kernel K height 5 is larger than the padded input height 4"):
        cnnlib.conv_as_matrix(torch.zeros(5, 1), (4, 4))
    with pytest.raises(ValueError, match="input_shape must be >= 1"):
        cnnlib.conv_as_matrix(torch.zeros(1, 1), (0, 4))


def test_stride_below_one():
    with pytest.raises(ValueError, match=r"stride must be >= 1 on each axis, got \(1, 0\)"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2), stride=(1, 0))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        cnnlib.pool2d(Z2, 2, stride=0)


def test_negative_padding():
    with pytest.raises(ValueError, match=r"padding must be >= 0 on each axis, got \(-1, -1\)"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2), padding=-1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        cnnlib.pool2d(Z2, 2, padding=(0, -1))


def test_pool_padding_over_half_the_window():
    with pytest.raises(ValueError, match="padding must be at most half of pool_size"):
        cnnlib.pool2d(Z2, 2, padding=2)
    with pytest.raises(ValueError, match=r"got padding \(0, 2\) for pool_size \(3, 3\)"):
        cnnlib.pool2d(Z2, 3, padding=(0, 2))  # torch's limit: 2 * padding <= pool_size
    assert cnnlib.pool2d(Z2, (2, 4), padding=(1, 2)).shape == (3, 2)  # exactly half is allowed


def test_non_tensor_argument():
    with pytest.raises(TypeError, match=r"X must be a torch.Tensor of shape \(H, W\), got list"):
        cnnlib.corr2d([[1.0, 2.0], [3.0, 4.0]], torch.zeros(1, 1))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        cnnlib.conv2d(Z4, 3.0)
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        cnnlib.pool2d(None, 2)
    with pytest.raises(ValueError, match=r"bias must be a tensor of shape \(1,\)"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2), bias=[0.0])


def test_integer_tensor_rejected():
    with pytest.raises(TypeError, match="X must be a floating-point tensor"):
        cnnlib.corr2d(torch.zeros(3, 3, dtype=torch.int64), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="X must be a floating-point tensor"):
        cnnlib.global_avg_pool2d(torch.zeros(1, 3, 3, dtype=torch.int64))


def test_non_int_stride_or_size():
    with pytest.raises(TypeError, match="stride must be an int or a pair of ints"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2), stride=1.5)
    with pytest.raises(TypeError, match="padding must be an int or a pair of ints"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2), padding=True)
    with pytest.raises(TypeError, match="pool_size must be an int or a pair of ints"):
        cnnlib.pool2d(Z2, (2, 2, 2))


def test_unknown_pool_mode():
    with pytest.raises(ValueError, match=r"mode must be 'max' or 'avg', got 'mean'"):
        cnnlib.pool2d(Z2, 2, mode="mean")


def test_dtype_mismatch():
    with pytest.raises(TypeError, match="X and K must have the same dtype"):
        cnnlib.corr2d(Z2, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="X and weight must have the same dtype"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="X and bias must have the same dtype"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2), torch.zeros(1, dtype=torch.float64))
    with pytest.raises(TypeError, match="X and K must have the same dtype"):
        cnnlib.corr2d_multi_in_out_1x1(Z3, torch.zeros(1, 2, 1, 1, dtype=torch.float64))


def test_device_mismatch():
    # The meta device stands in for a second device, so this runs without a GPU.
    meta = torch.device("meta")
    with pytest.raises(ValueError, match="X and K must be on the same device"):
        cnnlib.corr2d(Z2, torch.zeros(2, 2, device=meta))
    with pytest.raises(ValueError, match="X and weight must be on the same device"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2, device=meta))
    with pytest.raises(ValueError, match="X and bias must be on the same device"):
        cnnlib.conv2d(Z4, torch.zeros(1, 2, 2, 2), torch.zeros(1, device=meta))


def test_corr2d_multi_in_rejects_zero_channels():
    with pytest.raises(ValueError, match="X must have at least one channel"):
        cnnlib.corr2d_multi_in(torch.zeros(0, 3, 3), torch.zeros(0, 2, 2))


def test_conv2d_dilation_and_groups_errors():
    W = torch.zeros(4, 2, 2, 2)
    X = torch.zeros(1, 4, 5, 5)
    with pytest.raises(ValueError, match=r"dilation must be >= 1 on each axis, got \(1, 0\)"):
        cnnlib.conv2d(X, W, dilation=(1, 0), groups=2)
    with pytest.raises(TypeError, match="dilation must be an int or a pair of ints, got 1.5"):
        cnnlib.conv2d(X, W, dilation=1.5, groups=2)
    with pytest.raises(ValueError, match="groups must be a positive int, got 0"):
        cnnlib.conv2d(X, W, groups=0)
    with pytest.raises(TypeError, match="groups must be a positive int, got 2.0"):
        cnnlib.conv2d(X, W, groups=2.0)
    with pytest.raises(TypeError, match="groups must be a positive int, got True"):
        cnnlib.conv2d(X, torch.zeros(4, 4, 2, 2), groups=True)
    with pytest.raises(ValueError, match=r"groups must divide .* got groups=3 for X with 4 channels"):
        cnnlib.conv2d(X, torch.zeros(3, 1, 2, 2), groups=3)
    with pytest.raises(ValueError, match=r"groups=2 for X with 4 channels and weight with 3 output channels"):
        cnnlib.conv2d(X, torch.zeros(3, 2, 2, 2), groups=2)
    with pytest.raises(ValueError, match=r"weight must have shape \(F, 4 // groups = 2, kh, kw\)"):
        cnnlib.conv2d(X, torch.zeros(4, 4, 2, 2), groups=2)
    with pytest.raises(ValueError, match=r"dilated kernel \(dilation \(5, 5\)\) height 6 is larger than the padded"):
        cnnlib.conv2d(X, torch.zeros(4, 2, 2, 2), dilation=5, groups=2)
    cnnlib.conv2d(X, torch.zeros(4, 2, 2, 2), dilation=4, padding=0, groups=2)  # span 5 exactly fits
