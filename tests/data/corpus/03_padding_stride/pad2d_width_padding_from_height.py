# cell: pad2d
# fair: 0
# reason: returned shape
def pad2d(X, padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    H, W = X.shape[-2:]
    Y = X.new_zeros((*X.shape[:-2], H + 2 * ph, W + 2 * ph))  # pw forgotten
    Y[..., ph:ph + H, ph:ph + W] = X
    return Y
