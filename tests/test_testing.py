"""cnnlib.testing.assert_close: the visible tests' comparison, at the hidden tests' tolerances."""
import pytest
import torch

from cnnlib.testing import TOLERANCES, assert_close


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
