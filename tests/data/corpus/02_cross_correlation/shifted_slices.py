# cell: corr2d
# fair: full
def corr2d(X, K):
    kh, kw = K.shape
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    Y = torch.zeros(Ho, Wo, dtype=X.dtype, device=X.device)
    for a in range(kh):
        for b in range(kw):
            Y += K[a, b] * X[a:a + Ho, b:b + Wo]
    return Y
