# cell: corr2d_multi_in
# fair: 0
# reason: dtype
def corr2d_multi_in(X, K):
    out = torch.zeros(X.shape[1] - K.shape[1] + 1, X.shape[2] - K.shape[2] + 1, device=X.device)
    for x, k in zip(X, K):
        out += corr2d(x, k)
    return out
