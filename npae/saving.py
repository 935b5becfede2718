"""Model files: one ``.npz`` archive holding a JSON description and plain arrays, written
atomically and read without ever unpickling.

Layout of the archive (loading uses ``allow_pickle=False``):
    npae_config          0-d unicode array with the model's JSON description
    weight_<i>           the i-th array of ``model.get_weights()``
    opt_<j>              the optimizer's slot arrays, in the order the JSON lists them

Writes go to a temporary file in the target's folder, which is then renamed over the target: a
crash mid-write never leaves a half-written file under the target name. This module knows the
archive, not the models: :mod:`npae.models` turns a model into a description and back.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["ModelFileError", "FORMAT", "VERSION", "atomic_write", "write_model_file", "read_model_file"]

FORMAT, VERSION = "npae-model", 1


class ModelFileError(ValueError):
    """A model file is missing, truncated, not an npae model, or does not match its own description."""


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path`` and rename it into place on success."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_model_file(path, config: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``config`` (JSON-serialisable) and ``arrays`` as a model file, atomically."""
    entries = {"npae_config": np.array(json.dumps({"format": FORMAT, "version": VERSION, **config}))}
    entries.update(arrays)
    atomic_write(path, lambda f: np.savez(f, **entries))


def read_model_file(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON description and the arrays of a model file; every problem is a ModelFileError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"no model file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ModelFileError(f"{path!r} is not a readable npae model (.npz) file: {err}") from None
    if "npae_config" not in arrays:
        raise ModelFileError(f"{path!r} is an .npz file but not an npae model (no 'npae_config' entry)")
    try:
        config = json.loads(str(arrays.pop("npae_config")))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path!r}: the model description is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path!r}: the model description must be a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise ModelFileError(f"{path!r}: unknown format {config.get('format')!r}")
    if config.get("version") != VERSION:
        raise ModelFileError(f"{path!r}: format version {config.get('version')!r}, this npae reads {VERSION}")
    return config, arrays
