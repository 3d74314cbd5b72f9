"""Files puffin_bt writes: one atomic writer (price cache, forecast store, checkpoints, results)
and the default cache folder."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

__all__ = ["atomic_write_bytes", "default_cache_dir", "warn_cache_unwritable"]


def default_cache_dir() -> Path:
    """Folder for downloaded prices and the forecast store: ``$PUFFIN_BT_CACHE``, else
    ``$XDG_CACHE_HOME/puffin_bt``, else ``~/.cache/puffin_bt``.

    >>> default_cache_dir()                  # doctest: +SKIP
    PosixPath('/home/me/.cache/puffin_bt')
    """
    env = os.environ.get("PUFFIN_BT_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "puffin_bt"


def current_umask() -> int:
    """The process's umask, read without changing it where the OS says (Linux: /proc/self/status);
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, rename, fsync the folder.

    Readers see the old file or the new one, never a mix; a killed writer leaves at most
    a ``.<name>.<random>.tmp`` file beside it. The file gets the mode a plain ``open()`` would
    give it (0644 under umask 022), not the temp file's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


_UNWRITABLE_CACHES: set[tuple[str, str]] = set()


def warn_cache_unwritable(what: str, folder: Path, exc: OSError) -> None:
    """A cache (the forecast store, the price cache) that cannot be written, e.g. on a full disk: warn once per
    cache folder and process, however many writes fail, and let the caller carry on without caching."""
    key = (what, str(folder))
    if key in _UNWRITABLE_CACHES:
        return
    _UNWRITABLE_CACHES.add(key)
    warnings.warn(f"{what} {str(folder)!r} cannot be written ({exc.strerror or exc}); carrying on without caching: "
                  "free space there or pass another --cache-dir", stacklevel=3)
