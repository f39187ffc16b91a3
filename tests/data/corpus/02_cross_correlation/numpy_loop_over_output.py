# cell: corr2d
# fair: 0
# reason: so it loops over the output's pixels or rows
# A loop over the output in NumPy: its torch operators do not grow, the calls its code makes do.
import numpy as np


def corr2d(X, K):
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    kh, kw = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1), dtype=x.dtype)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(x[i:i + kh, j:j + kw] * k)
    return torch.from_numpy(out).to(X.device)
