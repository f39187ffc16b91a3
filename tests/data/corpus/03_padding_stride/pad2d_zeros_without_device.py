# cell: pad2d
# item: 1
# fair: 0
# reason: mixed devices
def pad2d(X, padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    H, W = X.shape[-2:]
    Y = torch.zeros((*X.shape[:-2], H + 2 * ph, W + 2 * pw), dtype=X.dtype)
    Y[..., ph:ph + H, pw:pw + W] = X
    return Y
