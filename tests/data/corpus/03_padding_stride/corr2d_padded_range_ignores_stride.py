# cell: corr2d_padded
# fair: 0
# reason: returned shape
def corr2d_padded(X, K, padding=0, stride=1):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    P = pad2d(X, padding)
    kh, kw = K.shape
    Ho, Wo = P.shape[0] - kh + 1, P.shape[1] - kw + 1  # the stride forgotten in the size
    Y = X.new_zeros((Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            if i * sh + kh <= P.shape[0] and j * sw + kw <= P.shape[1]:
                Y[i, j] = (P[i * sh:i * sh + kh, j * sw:j * sw + kw] * K).sum()
    return Y
