# cell: corr2d_multi_in_out_1x1
# fair: full
def corr2d_multi_in_out_1x1(X, K):
    return torch.einsum("oc,chw->ohw", K[:, :, 0, 0], X)
