# cell: corr2d
# item: 2
# fair: full
def corr2d(X, K):
    windows = X.unfold(0, K.shape[0], 1).unfold(1, K.shape[1], 1)  # (H', W', kh, kw)
    return torch.einsum("ijab,ab->ij", windows, K)
