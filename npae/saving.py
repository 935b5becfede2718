"""Model files: one ``.npz`` archive holding a JSON description and plain arrays, written
atomically and read without ever unpickling and without trusting a size it has not checked.

Layout of the archive (a zip of ``.npy`` members, as ``np.savez`` writes it):
    npae_config.npy      0-d unicode array with the model's JSON description (an object)
    weight_<i>.npy       the i-th array of ``model.get_weights()``
    opt_<j>.npy          the optimizer's slot arrays, in the order the JSON lists them

Writing: a temporary file in the target's folder, flushed to disk, then renamed over the target
(keeping an existing file's permissions): a crash mid-write never leaves a half-written file under
the target name, and a failed write leaves the old file as it was.

Reading (:class:`ModelFile`): only the members asked for are read, each after its ``.npy`` header
(shape and dtype) has been checked against what the caller expects, and against the member's
declared size, so a file whose description or arrays are inconsistent, or that would take more
memory than it plausibly holds (a decompression bomb), is refused with a :class:`ModelFileError`
before any large allocation. This module knows the archive, not the models: :mod:`npae.models`
turns a model into a description and back.
"""

from __future__ import annotations

import json
import os
import tempfile
import tokenize
import zipfile

import numpy as np

__all__ = ["ModelFileError", "FORMAT", "VERSION", "MAX_CONFIG_BYTES", "MAX_DEFLATE_RATIO", "atomic_write",
           "write_model_file", "ModelFile", "remove_stale_temporaries"]

FORMAT, VERSION = "npae-model", 2
READS = (1, 2)  # version 1: a chain's description (npae 0.3); 2: a graph's
MAX_CONFIG_BYTES = 16 * 2**20  # a description is a few KB; more is not an npae model
MAX_DEFLATE_RATIO = 50  # float weights compress by a few percent; a member that inflates more is a bomb
_TEMP_PREFIX = ".tmp-"


class ModelFileError(ValueError):
    """A model file is missing, truncated, not an npae model, or does not match its own description."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder) -> list[str]:
    """Delete the temporary files that writers killed mid-write left in ``folder`` (their process
    is gone); returns their names. A live writer's temporary file is left alone."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(_TEMP_PREFIX) and name.endswith(".part")):
            continue
        pid = name[len(_TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path`` and rename it into place on
    success; on any failure the temporary file is removed and the error names ``path``."""
    path = os.fspath(path)
    if not path:
        raise ValueError("cannot write to an empty path")
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot write {path!r}: it is a folder")
    folder = os.path.dirname(target)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-", suffix=".part", dir=folder)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path!r}: {err.strerror}") from None
    try:
        os.chmod(tmp, mode)  # mkstemp makes 0600 files: give the usual ones, or the replaced file's
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as err:
        _unlink(tmp)
        raise OSError(err.errno, f"cannot write {path!r}: {err.strerror or err}") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_model_file(path, config: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``config`` (JSON-serialisable) and ``arrays`` as a model file, atomically."""
    entries = {"npae_config": np.array(json.dumps({"format": FORMAT, "version": VERSION, **config}))}
    entries.update(arrays)
    atomic_write(path, lambda f: np.savez(f, **entries))


class ModelFile:
    """An opened model file: its JSON description (``config``) and its array members, read one by
    one and checked. Use as a context manager, or call :meth:`close`.

    Every problem is a :class:`ModelFileError` naming the file and what is wrong.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ModelFileError(f"no model file at {self.path!r}")
        if not zipfile.is_zipfile(self.path):
            raise ModelFileError(f"{self.path!r} is not an npae model file (.npz): it is not a zip archive")
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise ModelFileError(f"{self.path!r} is not a readable npae model (.npz) file: {err}") from None
        self._members = {}
        for info in infos:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                self.close()
                raise ModelFileError(f"{self.path!r}: member {info.filename!r} uses zip compression method "
                                     f"{info.compress_type}; npae reads stored or deflated members only")
            if info.filename.endswith(".npy"):
                self._members[info.filename[:-4]] = info
        if "npae_config" not in self._members:
            self.close()
            raise ModelFileError(f"{self.path!r} is an .npz file but not an npae model (no 'npae_config' entry)")
        try:
            self.config = self._read_config()
        except ModelFileError:
            self.close()
            raise

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        zf = self.__dict__.pop("_zip", None)
        if zf is not None:
            zf.close()

    def names(self) -> list[str]:
        """The array members the file holds (without ``.npy``)."""
        return [n for n in self._members if n != "npae_config"]

    def _error(self, message: str) -> ModelFileError:
        return ModelFileError(f"{self.path!r}: {message}")

    def _header(self, name: str):
        """(stream, shape, dtype, data bytes) of a member, its header read and its size checked."""
        info = self._members.get(name)
        if info is None:
            raise self._error(f"missing entry {name!r}")
        try:
            f = self._zip.open(info)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy format version {version}")
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, SyntaxError, tokenize.TokenError,
                MemoryError, RecursionError) as err:  # (NumPy parses the header as a Python literal)
            raise self._error(f"entry {name!r} is not a readable array: {err}") from None
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise self._error(f"entry {name!r} holds {dtype} values: npae files hold plain numbers only")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if fortran and len(shape) > 1:
            raise self._error(f"entry {name!r} is stored in Fortran order; npae writes C order")
        if info.file_size - f.tell() != nbytes:
            raise self._error(f"entry {name!r} declares {info.file_size:,} bytes but its header's shape {shape} of "
                              f"{dtype} needs {nbytes + f.tell():,}")
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > 2**20 \
                and info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1):
            raise self._error(f"entry {name!r} would inflate {info.compress_size:,} bytes to {info.file_size:,}: "
                              "refused as a decompression bomb")
        return f, shape, dtype, nbytes

    def _read(self, f, shape, dtype, nbytes, name):
        try:
            data = f.read(nbytes)
            f.read(1)  # at the end: the zip reader checks the member's CRC
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as err:
            raise self._error(f"entry {name!r} is damaged: {err}") from None
        if len(data) != nbytes:
            raise self._error(f"entry {name!r} is truncated: {len(data):,} of {nbytes:,} bytes")
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    def _read_config(self) -> dict:
        f, shape, dtype, nbytes = self._header("npae_config")
        if shape != () or dtype.kind != "U" or nbytes > MAX_CONFIG_BYTES:
            raise self._error(f"the model description must be one string of at most {MAX_CONFIG_BYTES:,} bytes, "
                              f"got shape {shape} of {dtype}")
        text = str(self._read(f, shape, dtype, nbytes, "npae_config")[()])
        try:
            config = json.loads(text)
        except json.JSONDecodeError as err:
            raise self._error(f"the model description is not valid JSON: {err}") from None
        except RecursionError:
            raise self._error("the model description nests values too deeply to be a model's") from None
        if not isinstance(config, dict):
            raise self._error(f"the model description must be a JSON object, got {type(config).__name__}")
        if config.get("format") != FORMAT:
            raise self._error(f"unknown format {config.get('format')!r}")
        if config.get("version") not in READS:
            raise self._error(f"format version {config.get('version')!r}, this npae reads versions "
                              f"{', '.join(map(str, READS))}")
        return config

    def check(self, name: str, shape: tuple[int, ...]) -> np.dtype:
        """Check that member ``name`` holds a float32 or float64 array of ``shape`` (reading only its
        header); returns its dtype."""
        f, got, dtype, _ = self._header(name)
        f.close()
        if dtype.kind != "f" or dtype.itemsize not in (4, 8):
            raise self._error(f"entry {name!r} holds {dtype} values, expected float32 or float64")
        if tuple(got) != tuple(shape):
            raise self._error(f"entry {name!r} has shape {tuple(got)}, expected {tuple(shape)}")
        return dtype

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Member ``name``, checked as by :meth:`check`, then read (a new array)."""
        self.check(name, shape)
        f, shape, dtype, nbytes = self._header(name)
        with f:
            return self._read(f, shape, dtype, nbytes, name).astype(dtype.newbyteorder("="))
