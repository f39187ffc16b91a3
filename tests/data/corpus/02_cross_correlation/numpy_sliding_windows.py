# cell: corr2d
# fair: full
# NumPy's window view and einsum: no loop at all.
import numpy as np


def corr2d(X, K):
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)  # (H', W', kh, kw)
    return torch.from_numpy(np.einsum("ijab,ab->ij", windows, k)).to(X.device)
