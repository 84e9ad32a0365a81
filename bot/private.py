"""Files only the bridge's own user may read: 0600 files in 0700 directories.

The SQLite database holds encrypted tokens and every cached table, backups are copies of it,
contract exports are business records, the key file decrypts tokens. With the usual umask (022)
all of them came out world-readable (0644). Everything that creates such a file or directory
goes through here, so the mode is set at creation — never a window in which it is readable.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path, *, tighten_existing: bool = False) -> Path:
    """Create `path` as 0700 (missing parents get the usual mode). An existing directory is
    left as the operator made it (a configured archive may be shared on purpose) unless
    `tighten_existing` — for VAR_DIR, which is the bridge's own."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if tighten_existing:
        tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if it does not exist (so a library that opens it later,
    such as sqlite3, finds a private file), and tighten it if it does."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    tighten(path, FILE_MODE)
    return path


def write_private_bytes(path: Path, content: bytes, *, sync: bool = False) -> None:
    """Write `content` to a new or truncated 0600 file; `sync` flushes it to disk first."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    tighten(path, FILE_MODE)  # an existing file keeps its mode through O_TRUNC


def tighten(path: Path, mode: int) -> None:
    """chmod to `mode` when group/other bits are set and we own the path; best effort."""
    try:
        info = path.stat()
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.getuid():
            path.chmod(mode)
    except OSError:
        pass
