# cell: corr2d_padded
# item: 2
# fair: full
def corr2d_padded(X, K, padding=0, stride=1):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    P = pad2d(X, padding)
    windows = P.unfold(0, K.shape[0], sh).unfold(1, K.shape[1], sw)  # (H', W', kh, kw)
    return (windows * K).sum(dim=(-1, -2))
