"""Crash-safe file publication: hidden staging siblings, fsync, and rename-if-absent.

A reader of the directory sees either nothing or the complete result: files and directories are
written under a hidden name (``.tmp-*``) in their final parent, fsynced, and renamed into place.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "ABANDONED_AFTER_SECONDS",
    "fsync_dir",
    "remove_abandoned",
    "remove_if_empty",
    "rename_new",
    "replace_whole",
    "staged_dir",
    "staged_file",
    "write_synced",
]


# A live staging entry lasts seconds; one older than this was left by a killed writer. Age, not a
# process id, since the writer may have run on another host sharing the repository.
ABANDONED_AFTER_SECONDS = 3600.0
_PREFIX = ".tmp-"


def remove_abandoned(parent: Path) -> None:
    """Delete the hidden staging entries in ``parent`` older than ABANDONED_AFTER_SECONDS."""
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for entry in os.scandir(parent):
        if not entry.name.startswith(_PREFIX):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass  # another writer cleaned it first


def _hidden_sibling(parent: Path) -> Path:
    # Not tempfile.mkdtemp/mkstemp: their 0700/0600 modes would survive the rename and lock out
    # a server running as another user; os.mkdir and open() honour the umask.
    return parent / f"{_PREFIX}{secrets.token_hex(8)}"


@contextmanager
def staged_file(parent: Path, data: bytes) -> Iterator[Path]:
    """A new hidden fsynced file in ``parent``, removed on exit unless renamed away meanwhile."""
    path = _hidden_sibling(parent)
    try:
        write_synced(path, data)
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def staged_dir(parent: Path) -> Iterator[Path]:
    """A new hidden directory in ``parent``, removed on exit unless renamed away meanwhile."""
    path = _hidden_sibling(parent)
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def replace_whole(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a hidden fsynced sibling renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path.parent, data) as staged:
        os.replace(staged, path)


def rename_new(source: Path, target: Path) -> bool:
    """Rename ``source`` to ``target`` unless ``target`` exists; False if it does."""
    if target.exists():
        return False
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with ``data``, flushed to disk."""
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (new names, renames) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_empty(path: Path) -> None:
    """Remove the directory ``path`` if it is empty."""
    try:
        path.rmdir()
    except OSError:
        pass  # not empty: someone else wrote into it meanwhile, so it is theirs to keep
