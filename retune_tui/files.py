"""Writing files so that a crash never leaves half a file where a good one was, and a
command never replaces a file the user has unless told to."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from retune_tui.errors import InputError, UserError


def _mode_for(path: Path) -> int:
    """The permissions a new file at ``path`` gets: those of the file it replaces, else the
    umask's (``mkstemp`` alone would make every output readable by its owner only)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[str]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` only if the
    block finishes, and is removed if it does not."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory; give a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # named as the file asked for, not as the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STAGING_NAME = ".saving"


@contextlib.contextmanager
def staged_into(folder: Path) -> Iterator[Path]:
    """A fresh staging folder inside ``folder`` to write a set of files into; when the block
    finishes, each replaces the file of its name in ``folder`` (a failure leaves ``folder``'s
    files as they were)."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    yield staging
    for path in staging.iterdir():
        if path.is_file():  # safetensors writes its files for the owner alone
            os.chmod(path, _mode_for(folder / path.name))
        os.replace(path, folder / path.name)
    staging.rmdir()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def check_output(path: str | Path | None, *, overwrite: bool, option: str = "--out") -> None:
    """Before any work: ``path`` can be written as a file, and is not one the user already
    has unless ``overwrite`` (the finished work is not then lost at the last step)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{option} {path} exists; pass --overwrite to replace it")
    check_folder(path.parent, option)


def check_distinct(outputs: dict[str, str | Path | None], inputs: Sequence[str | Path] = ()) -> None:
    """Before any work: no two ``outputs`` (option name -> path) are one file, and none is
    one of the ``inputs``, so nothing is written over another output or over what is read."""
    read = {Path(path).expanduser().resolve() for path in inputs}
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        where = Path(path).expanduser().resolve()
        if where in read:
            raise InputError(f"--{option} {path} is also read by this command; give another name")
        if where in seen:
            raise InputError(f"--{seen[where]} and --{option} are the same file {path}; give them different names")
        seen[where] = option


def is_folder(path: str | Path) -> bool:
    """``path`` is a folder; False, not an error, for a name the system refuses (too long, say)."""
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def check_folder(folder: str | Path, option: str) -> None:
    """``folder`` is, or can be made, a writable directory."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option}: cannot write in {existing}")
