"""Convolution by patch matrix and GEMM, a few images at a time (the IM2COL algorithm).

The maths is :mod:`npae.functional.conv`'s: Z = P W, dW = P^T dZ, dP = dZ W^T, dx = col2im(dP).
What differs is the memory: the patch matrix P is never built whole. A block of images' rows
(about :data:`npae.fast.policy.PATCH_BLOCK_BYTES`) is built and used while it is in cache, and
dW = sum over blocks b of P_b^T dZ_b; the backward pass rebuilds each block from the kept input
(except the last block's, which the forward pass may have left in the scratch memory).

With an input read upsampled (an UpSampling2D before the convolution, never formed), there is one
GEMM per output phase, with the kernel folded for it (:mod:`npae.fast.phases`): Z_p = P_p W_p
writes every uh-th row and uw-th column of Z, and the phases' input gradients add up in dx.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .blas import matmul
from .im2col import col2im, im2col
from .phases import fold_kernel, unfold_kernel_grad, upsampled_phases

__all__ = ["Geometry", "Gemm", "phase_plan", "image_blocks", "forward", "backward"]


class Geometry(NamedTuple):
    """A convolution's window over its (upsampled) input: output size, padding, kernel, strides."""

    ho: int
    wo: int
    pt: int
    pl: int
    kh: int
    kw: int
    sh: int
    sw: int


class Gemm(NamedTuple):
    """One GEMM of the plan: the im2col window (kh, kw, sh, sw, pt, pl, nh, nw), the kernel as a
    matrix (K, Cout), and the output phase (py, px) it writes (None: the whole output)."""

    window: tuple[int, ...]
    w2: np.ndarray
    at: tuple[int, int] | None


def phase_plan(kernel: np.ndarray, geom: Geometry, up: tuple[int, int]) -> tuple[list[Gemm], list | None]:
    """The GEMMs of a convolution, and the folded taps (None without upsampling): one GEMM with the
    layer's own window and kernel, or, reading an input upsampled by ``up``, one per output phase
    with the kernel folded for it."""
    cout = kernel.shape[3]
    if up == (1, 1):
        window = (geom.kh, geom.kw, geom.sh, geom.sw, geom.pt, geom.pl, geom.ho, geom.wo)
        return [Gemm(window, kernel.reshape(-1, cout), None)], None
    phases, taps = upsampled_phases(geom.kh, geom.kw, geom.pt, geom.pl, geom.ho, geom.wo, up)
    folded = fold_kernel(kernel, phases, taps)
    return [Gemm((kph, kpw, 1, 1, pt_p, pl_p, nh, nw), folded[r, :kph, :kpw].reshape(-1, cout), (py, px))
            for r, (py, px, pt_p, pl_p, kph, kpw, nh, nw) in enumerate(phases)], taps


def _patch_elements(plan: list[Gemm]) -> int:
    """Elements of one image's patch matrix, the largest of the plan's GEMMs: rows x K."""
    return max(g.window[6] * g.window[7] * len(g.w2) for g in plan)


def image_blocks(n: int, plan: list[Gemm], itemsize: int, block_bytes: int) -> list[tuple[int, int]]:
    """Image ranges [s, e) whose patch matrix is about ``block_bytes`` (at least one image)."""
    step = max(1, block_bytes // (_patch_elements(plan) * itemsize))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _patches(x, s, e, window, cols):
    """im2col of images [s, e) of x for ``window`` into the flat scratch ``cols``."""
    rows, k = (e - s) * window[6] * window[7], window[0] * window[1] * x.shape[3]
    return im2col(x[s:e], *window, cols[:rows * k].reshape(rows, k))


def _check(x, kernel, geom, up, a, shape, what, name):
    """x (N, H, W, Cin) and kernel (kh, kw, Cin, Cout) as ``geom`` says, and ``a`` of ``shape``: the
    GEMMs and the reshapes below would take an array of the right size but the wrong shape without
    a word."""
    ok = x.ndim == kernel.ndim == 4 and kernel.shape[:3] == (geom.kh, geom.kw, x.shape[3])
    if not (ok and a.shape == tuple(shape)):
        raise ValueError(f"conv_im2col.{what}: expected {name} of shape {tuple(shape)}, got {a.shape} (x {x.shape}, "
                         f"kernel {kernel.shape}, {geom}, up {up})")


def forward(x: np.ndarray, kernel: np.ndarray, geom: Geometry, up: tuple[int, int], z: np.ndarray, ws, owner,
            block_bytes: int):
    """Z (N*Ho*Wo, Cout) <- conv(x) without bias (x (N, H/uh, W/uw, Cin)). Returns what the backward
    pass may reuse: (s, e, patches) of the last block, left in the scratch memory, or None."""
    n, cout = x.shape[0], kernel.shape[3]
    _check(x, kernel, geom, up, z, (n * geom.ho * geom.wo, cout), "forward", "z")
    plan, _ = phase_plan(kernel, geom, up)
    blocks = image_blocks(n, plan, x.itemsize, block_bytes)
    cols = ws.take_scratch(owner, (blocks[0][1] - blocks[0][0]) * _patch_elements(plan), x.dtype)
    z4, (uh, uw) = z.reshape(n, geom.ho, geom.wo, cout), up
    rows_per_image = geom.ho * geom.wo
    for s, e in blocks:  # Z_b = P_b W, with P_b built just before, still in cache
        for window, w2, at in plan:
            p = _patches(x, s, e, window, cols)
            if at is None:
                matmul(p, w2, z[s * rows_per_image:e * rows_per_image])
            else:  # an output phase: every uh-th row and uw-th column of the block's outputs
                z_p = matmul(p, w2, ws.buffer((owner, "z_phase"), (len(p), cout), x.dtype))
                z4[s:e, at[0]::uh, at[1]::uw] = z_p.reshape(e - s, window[6], window[7], cout)
    return (s, e, p) if len(plan) == 1 else None


def backward(x: np.ndarray, g2: np.ndarray, kernel: np.ndarray, geom: Geometry, up: tuple[int, int],
             dw: np.ndarray | None, dx: np.ndarray | None, ws, owner, kept, block_bytes: int) -> None:
    """dw (kh, kw, Cin, Cout) <- P^T dZ unless dw is None (a frozen layer; x is then read for its
    shape only) and, unless dx is None, dx (N, H/uh, W/uw, Cin) <- col2im(dZ W^T), from g2 = dZ
    (N*Ho*Wo, Cout). ``kept``: what
    :func:`forward` returned, used only while ``owner`` still holds the scratch memory."""
    n, (cin, cout) = x.shape[0], kernel.shape[2:]
    h, w = x.shape[1], x.shape[2]
    _check(x, kernel, geom, up, g2, (n * geom.ho * geom.wo, cout), "backward", "g2")
    if dw is not None:
        _check(x, kernel, geom, up, dw, kernel.shape, "backward", "dw")
    if dx is not None:
        _check(x, kernel, geom, up, dx, x.shape, "backward", "dx")
    plan, taps = phase_plan(kernel, geom, up)
    blocks = image_blocks(n, plan, g2.dtype.itemsize, block_bytes)
    if ws.scratch.owner is not owner:
        kept = None  # another step (or this backward pass) has used the scratch memory since
    # (taken under another name: what it holds after this pass is no forward pass's patches)
    cols = ws.take_scratch((owner, "backward"), (blocks[0][1] - blocks[0][0]) * _patch_elements(plan), g2.dtype)
    k_max = max(len(g.w2) for g in plan)
    dws = ws.buffer((owner, "dw_plan"), (len(plan), k_max, cout), g2.dtype)  # dW of each GEMM
    g4, (uh, uw) = g2.reshape(n, geom.ho, geom.wo, cout), up
    rows_per_image = geom.ho * geom.wo
    # the blocks in reverse: the last block's patches may still be in the scratch
    for i, (s, e) in enumerate(reversed(blocks)):
        for j, (window, w2, at) in enumerate(plan):
            if dw is None:  # no kernel gradient: the block's rows of the scratch only hold dP below
                rows, k = (e - s) * window[6] * window[7], window[0] * window[1] * cin
                p = cols[:rows * k].reshape(rows, k)
            else:
                p = kept[2] if kept is not None and kept[:2] == (s, e) else _patches(x, s, e, window, cols)
            if at is None:
                g_b = g2[s * rows_per_image:e * rows_per_image]
            else:  # this phase's outputs of the block, gathered into rows
                g_b = ws.buffer((owner, "g_phase"), (len(p), cout), g2.dtype)
                g_b.reshape(e - s, window[6], window[7], cout)[...] = g4[s:e, at[0]::uh, at[1]::uw]
            if dw is not None:
                matmul(p.T, g_b, dws[j, :len(w2)], accumulate=i > 0)  # (K_p, Cout), summed over the blocks
            if dx is not None:
                dp = matmul(g_b, w2.T, p)  # dP_b (block rows, K_p) replaces P_b in the scratch
                col2im(dp, e - s, h, w, cin, *window, dx[s:e], accumulate=j > 0)
        kept = None  # (the scratch now holds dP)
    if dw is None:
        return
    if taps is None:
        dw.reshape(-1, cout)[...] = dws[0]
    else:  # each phase's folded-kernel gradient back to the taps folded into it
        d_folded = [dws[j, :len(g.w2)].reshape(g.window[0], g.window[1], cin, cout) for j, g in enumerate(plan)]
        unfold_kernel_grad(d_folded, taps, dw)
