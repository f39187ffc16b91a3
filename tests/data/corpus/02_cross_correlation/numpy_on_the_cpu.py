# cell: corr2d
# fair: full
# NumPy needs data (inconclusive on the meta device); it loops over the kernel's entries and moves its result
# back to X's device.
import numpy as np


def corr2d(X, K):
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    kh, kw = k.shape
    Ho, Wo = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.zeros((Ho, Wo), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            out += x[a:a + Ho, b:b + Wo] * k[a, b]
    return torch.from_numpy(out).to(X.device)
