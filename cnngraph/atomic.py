"""Write a file so that a failure at any point leaves an existing file untouched and no partial file behind:
a temporary file beside the target, written and fsynced, then renamed over it."""
from __future__ import annotations

import errno
import os
import secrets


def check_target(path) -> tuple[str, str]:
    """(folder, file name) of ``path`` once its folder exists and it is not a folder itself; else an OSError
    naming ``path``."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(errno.ENOTDIR, f"{folder} is not a folder", path)
        raise FileNotFoundError(errno.ENOENT, f"the folder {folder} does not exist", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "it is a folder", path)
    return folder, base


def write_atomically(data: bytes, path) -> None:
    """Raises OSError naming ``path`` (never the temporary file), e.g. when its folder does not exist."""
    path = os.fspath(path)
    folder, base = check_target(path)
    temp = None
    try:
        while temp is None:
            candidate = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # umask applies
            except FileExistsError:
                continue
            except OSError as error:                       # e.g. no permission: the user's name, not ours
                raise type(error)(error.errno, error.strerror, path) from None
            temp = candidate
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.exists(path):
            os.chmod(temp, os.stat(path).st_mode & 0o7777)
        os.replace(temp, path)
        temp = None
        fsync_folder(folder)
    finally:
        if temp is not None:
            try:
                os.remove(temp)
            except OSError:
                pass


def fsync_folder(folder: str) -> None:
    """Make the rename durable where the platform allows opening a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
