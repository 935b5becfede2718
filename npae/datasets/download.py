"""Verified downloads into the cache: mirrors tried in order, MD5 checked, atomic rename.

A file is streamed into a temporary file in the destination folder while its MD5 is computed;
only a complete file with the expected checksum is renamed to its final name. A failed, dropped or
corrupted download leaves nothing behind. A mirror may not send more than the file's known size
(the download stops as soon as it does), nor take longer than a deadline for the whole file (a
server that trickles a byte at a time never trips a socket timeout); a temporary file left by a
download that was killed is removed by the next one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time

__all__ = ["DownloadError", "download_verified", "md5_of", "remove_stale_parts"]


class DownloadError(OSError):
    """Every mirror failed for a file; ``attempts`` lists (url, reason)."""

    def __init__(self, filename: str, attempts: list[tuple[str, str]]):
        self.attempts = attempts
        lines = "\n".join(f"  {url}: {why}" for url, why in attempts)
        super().__init__(f"could not download {filename}:\n{lines}")


def md5_of(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _progress(filename: str, done: int, total: int | None, start: float, stream) -> None:
    if not getattr(stream, "isatty", lambda: False)():
        return
    rate = done / max(time.perf_counter() - start, 1e-9) / 1e6
    if total:
        fill = int(30 * done / total)
        stream.write(f"\r{filename} [{'=' * fill}{'.' * (30 - fill)}] {done / 1e6:.1f}/{total / 1e6:.1f} MB "
                     f"{rate:.1f} MB/s")
    else:
        stream.write(f"\r{filename} {done / 1e6:.1f} MB {rate:.1f} MB/s")
    stream.flush()


def remove_stale_parts(dest_dir: str) -> None:
    """Delete the .part files of downloads whose process is gone (killed mid-download)."""
    try:
        names = os.listdir(dest_dir)
    except OSError:
        return
    for name in names:
        parts = name.split(".")
        if name.startswith(".") and name.endswith(".part") and len(parts) >= 4 and parts[-3].isdigit():
            pid = int(parts[-3])
            try:
                os.kill(pid, 0)
                continue  # a live download
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            try:
                os.unlink(os.path.join(dest_dir, name))
            except OSError:
                pass


def _fetch(url: str, dest_dir: str, filename: str, md5: str, size: int | None, timeout: float, deadline: float,
           stream) -> str:
    """Download one URL into dest_dir/filename; raise OSError/ValueError with a reason on failure."""
    import urllib.request

    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.{os.getpid()}.", suffix=".part", dir=dest_dir)
    try:
        digest, done, start = hashlib.md5(), 0, time.perf_counter()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            if size is not None and total is not None and total != size:
                raise OSError(f"the server announces {total:,} bytes; the file has {size:,}")
            while chunk := resp.read1(1 << 16):  # (read1: whatever has arrived, so the deadline is checked)
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if size is not None and done > size:
                    raise OSError(f"the server sent more than the file's {size:,} bytes; stopped")
                if time.monotonic() > deadline:
                    raise OSError(f"too slow: {done:,} bytes in {time.perf_counter() - start:.0f} s, past the "
                                  "deadline for the whole file")
                _progress(filename, done, total or size, start, stream)
            if (total or size) is not None and done != (total or size):
                raise OSError(f"connection closed after {done:,} of {(total or size):,} bytes")
        if getattr(stream, "isatty", lambda: False)():
            stream.write("\n")
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch: expected md5 {md5}, got {digest.hexdigest()}")
        final = os.path.join(dest_dir, filename)
        os.replace(tmp, final)
        return final
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_verified(filename: str, mirrors: list[str], md5: str, dest_dir: str, timeout: float = 30.0,
                      stream=None, size: int | None = None, deadline: float | None = None) -> str:
    """Fetch ``filename`` from the first mirror that serves it with the right MD5 into ``dest_dir``.

    ``size``: the file's length in bytes, which no mirror may exceed; ``timeout``: seconds a socket
    may wait; ``deadline``: seconds each mirror may take for the whole file (default: 120 s plus
    one per 50 kB of ``size``).

    Returns the final path. Raises :class:`DownloadError` listing every mirror's failure.
    """
    import http.client  # imported here, not with npae: urllib pulls in ssl (~50 ms, ~2 MB)
    import urllib.error

    stream = stream or sys.stderr
    remove_stale_parts(dest_dir)
    if deadline is None:
        deadline = 120.0 + (size or 0) / 50_000
    attempts = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        try:
            return _fetch(url, dest_dir, filename, md5, size, timeout, time.monotonic() + deadline, stream)
        except urllib.error.HTTPError as err:
            attempts.append((url, f"HTTP {err.code} {err.reason}"))
        except urllib.error.URLError as err:
            attempts.append((url, f"cannot connect: {err.reason}"))
        except (OSError, ValueError, http.client.HTTPException) as err:  # dropped, timeout, checksum
            attempts.append((url, str(err) or type(err).__name__))
    raise DownloadError(filename, attempts)
