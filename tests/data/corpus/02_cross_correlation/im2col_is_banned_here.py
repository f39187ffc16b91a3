# cell: corr2d
# item: 2
# fair: 0
# reason: torch.nn.functional.unfold
import torch.nn.functional as F


def corr2d(X, K):
    cols = F.unfold(X[None, None], K.shape)[0]  # (kh*kw, L)
    return (K.reshape(1, -1) @ cols).reshape(X.shape[0] - K.shape[0] + 1, -1)
