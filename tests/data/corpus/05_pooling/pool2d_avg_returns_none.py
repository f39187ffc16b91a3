# cell: pool2d
# item: 3
# fair: 0
# reason: returned NoneType
def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    kh, kw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    P = X.new_full((*X.shape[:-2], X.shape[-2] + 2 * ph, X.shape[-1] + 2 * pw), float("-inf"))
    P[..., ph:ph + X.shape[-2], pw:pw + X.shape[-1]] = X
    windows = P.unfold(-2, kh, sh).unfold(-2, kw, sw)
    if mode == "max":
        return windows.amax(dim=(-1, -2))
