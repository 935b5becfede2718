"""The fast path: the same numbers as the reference path (:mod:`npae.reference`), on Numba kernels.

A model compiled with ``jit_compile="auto"`` (the default) or True runs its batches here. Nothing
in :mod:`npae.layers` or :mod:`npae.functional` imports this package: the layers say what is
computed, and the fast path reads them (their configuration and weights) to decide how.

    policy.py     pure functions: which convolution algorithm, which fusions apply
    planner.py    graph + losses + mode -> a Plan of typed steps (steps.py), by rewrite rules
    plan.py       the Plan: segments of steps over the graph's tensors, and their runs
    memory.py     the buffers a plan runs in, one workspace per mode (train, evaluate, predict)
                  and thread
    path.py       FastPath: what a Model calls (plans, workspaces)
    warm.py       the first run on a machine: start on the reference path while a background
                  process (npae.warmup) compiles the kernels; WarmingPath, ForegroundPath
    the kernels, one operation per module, each tested against its reference operation:
    elementwise.py (bias + activation, losses, optimizer updates), im2col.py, conv_direct.py,
    conv_im2col.py, conv_gemm.py, winograd.py, phases.py, pool.py, upsample.py, dense_stack.py,
    batchnorm.py,
    blas.py (OpenBLAS called from Numba), runtime.py (Numba's settings)
"""

from .path import FastPath
from .plan import Plan
from .planner import plan

__all__ = ["FastPath", "Plan", "plan"]
