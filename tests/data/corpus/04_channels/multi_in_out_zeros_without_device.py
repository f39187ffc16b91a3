# cell: corr2d_multi_in_out
# item: 1
# fair: 0
# reason: mixed devices
def corr2d_multi_in_out(X, K):
    C_out, C, kh, kw = K.shape
    Y = torch.zeros((C_out, X.shape[1] - kh + 1, X.shape[2] - kw + 1), dtype=X.dtype)
    for o in range(C_out):
        Y[o] = corr2d_multi_in(X, K[o])
    return Y
