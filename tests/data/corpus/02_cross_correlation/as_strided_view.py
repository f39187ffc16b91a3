# cell: corr2d
# item: 2
# fair: full
def corr2d(X, K):
    X = X.contiguous()
    kh, kw = K.shape
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    s0, s1 = X.stride()
    windows = X.as_strided((Ho, Wo, kh, kw), (s0, s1, s0, s1))
    return (windows * K).sum(dim=(2, 3))
