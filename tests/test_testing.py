"""cnnlib.testing: assert_close, the visible tests' comparison at the hidden tests' tolerances, and
assert_follows_device."""
import pytest
import torch

from cnnlib.testing import TOLERANCES, assert_close, assert_follows_device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_within_the_tolerance_passes_and_beyond_fails(dtype):
    tol = TOLERANCES[dtype]
    expected = torch.tensor([[19.0, 25.0], [37.0, 43.0]], dtype=torch.float64)
    inside = expected * (1 + tol.rtol / 2)
    assert_close(inside.to(dtype), expected)
    outside = expected + 10 * (tol.atol + tol.rtol * expected.abs())
    with pytest.raises(AssertionError, match="differ by up to"):
        assert_close(outside.to(dtype), expected)


def test_shape_type_and_message():
    with pytest.raises(AssertionError, match=r"expected shape \(2,\), got \(3,\)"):
        assert_close(torch.zeros(3), torch.zeros(2))
    with pytest.raises(AssertionError, match="expected a torch.Tensor, got list"):
        assert_close([0.0, 0.0], torch.zeros(2))
    with pytest.raises(AssertionError, match="row 0 is wrong"):
        assert_close(torch.ones(2), torch.zeros(2), "row 0 is wrong")
    with pytest.raises(TypeError, match="expected must be a torch.Tensor"):
        assert_close(torch.ones(2), [1.0, 1.0])


def test_an_fft_correlation_passes_where_exact_equality_fails():
    X, K = torch.randn(6, 7, generator=torch.Generator().manual_seed(0)), torch.tensor([[1.0, -1.0]])
    direct = torch.stack([(X[:, j:j + 2] * K).sum(dim=1) for j in range(6)], dim=1)
    H, W = X.shape
    full = torch.fft.irfft2(torch.fft.rfft2(X, (H, W + 1)) * torch.fft.rfft2(K.flip(0, 1), (H, W + 1)), (H, W + 1))
    via_fft = full[:, 1:W][:H]
    assert not torch.equal(via_fft, direct)
    assert_close(via_fft, direct)


def _corr2d_new_zeros(X, K):
    kh, kw = K.shape
    Y = X.new_zeros((X.shape[0] - kh + 1, X.shape[1] - kw + 1))
    for a in range(kh):
        for b in range(kw):
            Y = Y + X[a:a + Y.shape[0], b:b + Y.shape[1]] * K[a, b]
    return Y


def _corr2d_torch_zeros(X, K):
    """corr2d's output shape, made with torch.zeros and no device= (values left out): always on the CPU."""
    kh, kw = K.shape
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    return torch.zeros((Ho, Wo), dtype=X.dtype)  # the values are not the point here: the device is


def _corr2d_torch_zeros_loop(X, K):
    kh, kw = K.shape
    Y = torch.zeros((X.shape[0] - kh + 1, X.shape[1] - kw + 1), dtype=X.dtype)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + kh, j:j + kw] * K).sum()
    return Y


def test_follows_device_names_the_torch_zeros_mistake():
    import re
    with pytest.raises(AssertionError, match=re.escape("mixed the input's device with another")) as e:
        assert_follows_device(_corr2d_torch_zeros_loop, torch.rand(5, 6), torch.rand(2, 3))
    assert "torch.zeros(...) without device=" in str(e.value)
    with pytest.raises(AssertionError, match=re.escape("is on cpu: a tensor made without the input's device "
                                                       "lands on the CPU (e.g. torch.zeros(...) without device=)")):
        assert_follows_device(_corr2d_torch_zeros, torch.rand(5, 6), torch.rand(2, 3))
    with pytest.raises(AssertionError, match="its output tensor 1 is on cpu"):
        assert_follows_device(lambda X: (X * 2, torch.ones(2)), torch.rand(3))


def test_follows_device_moves_a_module_and_rejects_non_tensors():
    layer = torch.nn.Linear(3, 2)
    assert_follows_device(layer, torch.rand(4, 3))
    assert layer.weight.device.type == "cpu"  # the caller's module is not moved
    with pytest.raises(AssertionError, match="returned int, not a tensor"):
        assert_follows_device(lambda X: 3, torch.rand(2))
    with pytest.raises(TypeError, match="fn must be callable"):
        assert_follows_device(3, torch.rand(2))


def test_follows_device_does_nothing_in_a_grading_kernel(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "cnngrader.kernel", types.ModuleType("cnngrader.kernel"))
    monkeypatch.delitem(sys.modules, "cnngrader.grading", raising=False)
    assert_follows_device(_corr2d_torch_zeros, torch.rand(5, 6), torch.rand(2, 3))  # skipped: no error
    monkeypatch.setitem(sys.modules, "cnngrader.grading", types.ModuleType("cnngrader.grading"))
    with pytest.raises(AssertionError, match="is on cpu"):  # the grader's checks loaded: a student's own kernel
        assert_follows_device(_corr2d_torch_zeros, torch.rand(5, 6), torch.rand(2, 3))
