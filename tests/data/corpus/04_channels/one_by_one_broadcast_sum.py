# cell: corr2d_multi_in_out_1x1
# fair: full
# A broadcast product summed over the input channels: no loop, and no more than one matrix product (none).
def corr2d_multi_in_out_1x1(X, K):
    return (K[:, :, 0, 0, None, None] * X[None]).sum(dim=1)  # (C_out, C, H, W) summed over C
