# cell: pool2d
# item: 3
# fair: 0
# reason: returned shape
def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    kh, kw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    P = X.new_full((*X.shape[:-2], X.shape[-2] + 2 * ph, X.shape[-1] + 2 * pw),
                   float("-inf") if mode == "max" else 0.0)
    P[..., ph:ph + X.shape[-2], pw:pw + X.shape[-1]] = X
    Ho = (P.shape[-2] - kh) // sh + 1
    Wo = (P.shape[-2] - kw) // sw + 1  # the width from the height
    Y = X.new_zeros((*X.shape[:-2], Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            win = P[..., i * sh:i * sh + kh, j * sw:j * sw + kw]
            Y[..., i, j] = win.amax(dim=(-1, -2)) if mode == "max" else win.mean(dim=(-1, -2))
    return Y
