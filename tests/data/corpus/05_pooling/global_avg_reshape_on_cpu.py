# cell: global_avg_pool2d
# item: 1
# fair: 0
# reason: mixed devices
def global_avg_pool2d(X):
    total = torch.zeros(X.shape[:-2], dtype=X.dtype)
    for i in range(X.shape[-2]):
        for j in range(X.shape[-1]):
            total = total + X[..., i, j]
    return (total / (X.shape[-2] * X.shape[-1]))[..., None, None]
