# cell: corr2d
# fair: full
import sys
import warnings


def corr2d(X, K):
    print("corr2d got", tuple(X.shape), tuple(K.shape))
    print("debug: to stderr", file=sys.stderr)
    warnings.warn("my corr2d is slow")
    kh, kw = K.shape
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    Y = X.new_zeros((Ho, Wo))
    for a in range(kh):
        for b in range(kw):
            Y = Y + X[a:a + Ho, b:b + Wo] * K[a, b]
    return Y
