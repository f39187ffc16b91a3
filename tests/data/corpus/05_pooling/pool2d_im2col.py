# cell: pool2d
# item: 2
# fair: full
# F.unfold: A5's text allows window views.
import torch.nn.functional as F


def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    kh, kw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    lead = X.shape[:-2]
    P = X.new_full((*lead, X.shape[-2] + 2 * ph, X.shape[-1] + 2 * pw), float("-inf") if mode == "max" else 0.0)
    P[..., ph:ph + X.shape[-2], pw:pw + X.shape[-1]] = X
    Ho, Wo = (P.shape[-2] - kh) // sh + 1, (P.shape[-1] - kw) // sw + 1
    flat = P.reshape(-1, 1, P.shape[-2], P.shape[-1])  # (B, 1, H+2ph, W+2pw)
    cols = F.unfold(flat, (kh, kw), stride=(sh, sw))  # (B, kh*kw, L)
    out = cols.amax(dim=1) if mode == "max" else cols.mean(dim=1)
    return out.reshape(*lead, Ho, Wo)
