# cell: global_avg_pool2d
# fair: full
def global_avg_pool2d(X):
    return X.mean(dim=(-2, -1), keepdim=True)
