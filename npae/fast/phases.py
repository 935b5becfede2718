"""Reading an upsampled image without forming it: a convolution of an image upsampled by (uh, uw)
(UpSampling2D, nearest neighbour) as uh*uw convolutions of the small image, one per output phase.

Along one axis, output i = uh*a + p (phase p) of a k-tap window with padding ``pad`` reads
upsampled pixel i - pad + d, which is small pixel a + floor((p - pad + d) / uh): for each phase the
taps d fall on a few consecutive small pixels, and taps that fall on the same one act as one tap
with their weights summed. A 3x3 kernel on an image upsampled 2x becomes four 2x2 kernels on the
small one: 16 instead of 36 multiply-adds per 2x2 block of outputs. The gradients follow phase by
phase: a folded tap's gradient goes back to every tap folded into it (:func:`unfold_kernel_grad`,
the adjoint of :func:`fold_kernel`), and the input gradient is the sum of the phases' adjoints.

Phase tables, one row per output phase (one row, phase (0, 0), for an ordinary input):

    (py, px, pt_p, pl_p, kph, kpw, nh, nw)

the phase's first output row and column, its padding above and left on the small image, its folded
kernel's size, and its number of output rows and columns.
"""

from __future__ import annotations

import numpy as np

__all__ = ["upsampled_phases", "fold_kernel", "unfold_kernel_grad"]


def _phase_taps(k: int, pad: int, up: int) -> list[tuple[int, list[int]]]:
    """Along one axis, per phase p < up: (pad_p, taps), where the phase convolution reads small
    pixel a - pad_p + t for its output a (= output up*a + p) and tap d of the k-tap window folds
    into phase tap taps[d]. Small pixel a + floor((p - pad + d) / up) is what tap d reads."""
    phases = []
    for p in range(up):
        offsets = [(p - pad + d) // up for d in range(k)]  # nondecreasing, the first <= 0
        phases.append((-offsets[0], [o - offsets[0] for o in offsets]))
    return phases


def upsampled_phases(kh, kw, pt, pl, ho, wo, up):
    """The phase table (see above; int64 (P, 8)) of a kh x kw convolution of an input upsampled by
    ``up`` with ho x wo outputs, and per phase the folded tap of each tap (ty, tx)."""
    rows, taps = [], []
    for py, (pt_p, ty) in enumerate(_phase_taps(kh, pt, up[0])):
        for px, (pl_p, tx) in enumerate(_phase_taps(kw, pl, up[1])):
            if py < ho and px < wo:
                rows.append((py, px, pt_p, pl_p, ty[-1] + 1, tx[-1] + 1, len(range(py, ho, up[0])),
                             len(range(px, wo, up[1]))))
                taps.append((ty, tx))
    return np.array(rows, dtype=np.int64).reshape(-1, 8), taps


def fold_kernel(w, phases, taps):
    """Every phase's kernel: w (kh, kw, Cin, Cout) with the taps that read the same small pixel
    summed, (P, max kph, max kpw, Cin, Cout), each in its top-left corner (zeros around it)."""
    folded = np.zeros((len(phases), phases[:, 4].max(), phases[:, 5].max(), *w.shape[2:]), w.dtype)
    for r, (ty, tx) in enumerate(taps):
        for di, a in enumerate(ty):
            for dj, b in enumerate(tx):
                folded[r, a, b] += w[di, dj]
    return folded


def unfold_kernel_grad(d_folded, taps, dw):
    """The adjoint of :func:`fold_kernel`: dw[di, dj] = sum over phases r of d_folded[r][ty[di],
    tx[dj]] (each tap's weight went into one folded tap per phase); d_folded is fold_kernel's
    layout or a list of per-phase (kph, kpw, Cin, Cout) arrays. Fills and returns dw."""
    dw[...] = 0
    for r, (ty, tx) in enumerate(taps):
        for di, a in enumerate(ty):
            for dj, b in enumerate(tx):
                dw[di, dj] += d_folded[r][a, b]
    return dw


