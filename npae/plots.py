"""Figures: loss curves, reconstructions, the 2-D view of the codes, learned filters, activation
histograms. Headless (Agg backend); every file is written atomically."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .saving import atomic_write  # noqa: E402

__all__ = ["save_figure", "plot_history", "plot_reconstructions", "plot_codes", "plot_filters", "plot_histograms",
           "pca_2d"]


def save_figure(fig, path) -> str:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return os.fspath(path)


def plot_history(history: dict[str, list[float]], path, title: str = "") -> str:
    """Training and validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if history.get(key):
            marker = "o" if len(history[key]) <= 30 else None  # markers clutter long runs
            ax.plot(range(1, len(history[key]) + 1), history[key], marker=marker, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_reconstructions(rows: list[np.ndarray], labels: list[str], path, n: int = 10) -> str:
    """The tutorial's figure: one row per array (e.g. originals, then reconstructions), n digits each."""
    fig, axes = plt.subplots(len(rows), n, figsize=(2 * n, 2 * len(rows)), squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels)):
        for i in range(n):
            ax = axes[r][i]
            ax.imshow(np.asarray(images[i]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=14)
    return save_figure(fig, path)


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """Project (n, d) codes onto their two principal components (d = 2 is returned as is)."""
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if codes.shape[1] <= 2:
        return codes
    centred = codes - codes.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_codes(codes: np.ndarray, labels: np.ndarray, path, title: str = "") -> str:
    """Scatter of the codes in 2-D (PCA where wider), coloured by class label."""
    wide = np.asarray(codes).reshape(len(codes), -1).shape[1] > 2
    xy = pca_2d(codes)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="label")
    ax.set_title(title or ("codes (PCA to 2-D)" if wide else "codes"))
    return save_figure(fig, path)


def plot_filters(kernel: np.ndarray, path, max_filters: int = 32) -> str:
    """First-layer filters as images: a dense kernel (784, units) shows each unit's 28x28 weights;
    a conv kernel (kh, kw, cin, cout) shows each filter's first input channel."""
    k = np.asarray(kernel)
    tiles = k.T.reshape(-1, 28, 28) if k.ndim == 2 else np.moveaxis(k[:, :, 0, :], -1, 0)
    tiles = tiles[:max_filters]
    cols = min(8, len(tiles))
    rows = int(np.ceil(len(tiles) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles):
        ax.imshow(tile, cmap="RdBu_r", vmin=-np.abs(tile).max(), vmax=np.abs(tile).max())
    fig.suptitle("learned first-layer filters")
    return save_figure(fig, path)


def plot_histograms(values: dict[str, np.ndarray], path, xlabel: str = "mean code activation") -> str:
    """Overlaid histograms, e.g. the mean code activation with and without an L1 penalty."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in values.items():
        ax.hist(np.ravel(v), bins=40, alpha=0.6, label=f"{label} (mean {np.mean(v):.3f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()
    return save_figure(fig, path)
