# cell: corr2d
# fair: 0
# reason: so it loops over the output's pixels or rows
# Vectorised along each row, but one step per output row: still a loop over the output.
def corr2d(X, K):
    kh, kw = K.shape
    rows = []
    for i in range(X.shape[0] - kh + 1):
        windows = X[i:i + kh].unfold(1, kw, 1)  # (kh, W', kw)
        rows.append(torch.einsum("ajb,ab->j", windows, K))
    return torch.stack(rows)
