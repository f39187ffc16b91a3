# cell: corr2d_multi_in_out_1x1
# fair: 0
# reason: wrong values
def corr2d_multi_in_out_1x1(X, K):
    C, H, W = X.shape
    Y = K.reshape(K.shape[0], C) @ X.reshape(C, H * W)  # (C_out, H*W)
    return Y.reshape(K.shape[0], W, H).transpose(1, 2)  # the pixels read in the wrong order
