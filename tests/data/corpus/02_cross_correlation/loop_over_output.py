# cell: corr2d
# fair: 0
# reason: so it loops over the output's pixels or rows
# The chapter's two loops over the output pixels: the task asks for no loop over the output, and the hidden
# tests count the steps for a 4x4 and a 16x16 input.
def corr2d(X, K):
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y
