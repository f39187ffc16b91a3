# cell: pool2d
# item: 3
# fair: 0
# reason: returned an ndarray
import numpy as np
from numpy.lib.stride_tricks import as_strided


def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    kh, kw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    x = X.detach().cpu().numpy()
    fill = -np.inf if mode == "max" else 0.0
    pad = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    P = np.ascontiguousarray(np.pad(x, pad, constant_values=fill))
    Ho, Wo = (P.shape[-2] - kh) // sh + 1, (P.shape[-1] - kw) // sw + 1
    st = P.strides
    win = as_strided(P, (*P.shape[:-2], Ho, Wo, kh, kw), (*st[:-2], st[-2] * sh, st[-1] * sw, st[-2], st[-1]))
    return win.max(axis=(-1, -2)) if mode == "max" else win.mean(axis=(-1, -2))
