# cell: corr2d
# fair: 0
# reason: dtype
def corr2d(X, K):
    kh, kw = K.shape
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    Y = torch.zeros((Ho, Wo), device=X.device)  # float32 whatever X is
    for a in range(kh):
        for b in range(kw):
            Y += X[a:a + Ho, b:b + Wo] * K[a, b]
    return Y
