# cell: pad2d
# fair: full
def pad2d(X, padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    H, W = X.shape[-2:]
    Y = X.new_zeros((*X.shape[:-2], H + 2 * ph, W + 2 * pw))
    Y[..., ph:ph + H, pw:pw + W] = X
    return Y
