# cell: corr2d_multi_in_out_1x1
# fair: 0
# reason: the task asks for one matrix product
# Right values, but the input channels split in two halves, one matrix product each.
def corr2d_multi_in_out_1x1(X, K):
    C, H, W = X.shape
    h = C // 2
    K2, X2 = K.reshape(K.shape[0], C), X.reshape(C, H * W)
    return (K2[:, :h] @ X2[:h] + K2[:, h:] @ X2[h:]).reshape(K.shape[0], H, W)
