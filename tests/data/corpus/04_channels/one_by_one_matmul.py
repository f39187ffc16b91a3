# cell: corr2d_multi_in_out_1x1
# fair: full
def corr2d_multi_in_out_1x1(X, K):
    C, H, W = X.shape
    return (K.reshape(K.shape[0], C) @ X.reshape(C, H * W)).reshape(K.shape[0], H, W)
