# cell: corr2d_multi_in_out
# item: 2
# fair: full
def corr2d_multi_in_out(X, K):
    windows = X.unfold(1, K.shape[2], 1).unfold(2, K.shape[3], 1)  # (C, H', W', kh, kw)
    return torch.einsum("cijab,ocab->oij", windows, K)
