# cell: corr2d
# fair: 0
# reason: returned shape
def corr2d(X, K):
    kh, kw = K.shape
    Ho = X.shape[0] - kh + 1
    Wo = X.shape[0] - kw + 1  # the width taken from the height
    Y = X.new_zeros((Ho, Wo))
    for a in range(kh):
        for b in range(kw):
            Y = Y + X[a:a + Ho, b:b + Wo] * K[a, b]
    return Y
