# cell: pool2d
# item: 2
# fair: full
def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    kh, kw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    P = X.new_full((*X.shape[:-2], X.shape[-2] + 2 * ph, X.shape[-1] + 2 * pw),
                   float("-inf") if mode == "max" else 0.0)
    P[..., ph:ph + X.shape[-2], pw:pw + X.shape[-1]] = X
    windows = P.unfold(-2, kh, sh).unfold(-2, kw, sw)  # (..., H', W', kh, kw)
    return windows.amax(dim=(-1, -2)) if mode == "max" else windows.mean(dim=(-1, -2))
