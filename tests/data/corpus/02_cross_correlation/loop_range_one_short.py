# cell: corr2d
# fair: 0
# reason: returned shape
def corr2d(X, K):
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h, X.shape[1] - w))  # one row and column short
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y
