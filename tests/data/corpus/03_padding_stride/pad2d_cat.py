# cell: pad2d
# fair: full
def pad2d(X, padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    rows = X.new_zeros((*X.shape[:-2], ph, X.shape[-1]))
    X = torch.cat([rows, X, rows], dim=-2)
    cols = X.new_zeros((*X.shape[:-1], pw))
    return torch.cat([cols, X, cols], dim=-1)
