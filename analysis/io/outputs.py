"""Writing results without losing anything: output guards and atomic writes.

Every file or directory Headroom writes for a user (predictions, JSON reports, materialized and
recovered models, exports) goes through this module, so three rules hold everywhere:

1. **Nothing is overwritten by surprise.** An existing file, or a non-empty directory, is only
   replaced when the user says `overwrite=True` (`--overwrite`). An output is never one of the
   run's inputs (the data file, the recipe, the source model's directory), not even with
   `overwrite`. The checks run *before* the work, so a bad path fails in a second, not after an
   hour of training.
2. **A write is complete or absent.** Files are written to a temporary name beside the target
   and renamed into place (`os.replace` is atomic on one filesystem); a directory is built as a
   temporary sibling and renamed in whole. Ctrl-C, a crash or a full disk leave the old output as
   it was and no half-written model that looks complete.
3. **One writer at a time.** A directory being written holds a lock file beside it; a second
   writer gets "already being written" instead of a mixed directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Iterator

from analysis.errors import HeadroomError

PathLike = str | os.PathLike


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _check_parent(target: Path, what: str) -> None:
    parent = target.parent
    if not parent.exists():
        raise HeadroomError(f"Cannot write {what} '{target}': the folder '{parent}' does not exist.")
    if not parent.is_dir():
        raise HeadroomError(f"Cannot write {what} '{target}': '{parent}' is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HeadroomError(f"Cannot write {what} '{target}': the folder '{parent}' is not writable.")


def _check_not_input(target: Path, inputs: Iterable[PathLike | None], what: str) -> None:
    for given in inputs:
        if not given:
            continue
        source = Path(given)
        if not source.exists():
            continue
        if _same(target, source) or (source.is_dir() and _inside(target, source)) or \
                (target.exists() and target.is_dir() and _inside(source, target)):
            raise HeadroomError(f"The {what} '{target}' would overwrite the input '{given}'; choose another path.")


def check_output_file(path: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                      what: str = "output file") -> Path:
    """Refuse, with one sentence, a file path Headroom must not write; return it as a Path."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise HeadroomError(f"The {what} '{target}' is a directory; give a file name.")
    _check_not_input(target, inputs, what)
    if target.exists() and not overwrite:
        raise HeadroomError(f"The {what} '{target}' already exists; choose another name or pass --overwrite.")
    _check_parent(target, what)
    return target


def check_output_dir(path: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                     what: str = "output directory") -> Path:
    """Refuse a directory Headroom must not write into (non-empty, an input, unwritable)."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise HeadroomError(f"The {what} '{target}' is a file, not a directory.")
    _check_not_input(target, inputs, what)
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise HeadroomError(
            f"The {what} '{target}' is not empty; choose a new directory or pass --overwrite to replace it whole."
        )
    _check_parent(target, what)
    return target


def atomic_write_text(path: PathLike, text: str, *, overwrite: bool = False, inputs: Iterable[PathLike | None] = (),
                      what: str = "output file") -> Path:
    """Write `text` to `path` through a temporary sibling and a rename: complete or not at all."""
    target = check_output_file(path, inputs=inputs, overwrite=overwrite, what=what)
    with atomic_file(target) as f:
        f.write(text)
    return target


@contextlib.contextmanager
def atomic_file(target: Path, mode: str = "w") -> Iterator:
    """Open a temporary sibling of `target` for writing; rename it over `target` on success.

    Call `check_output_file` first: this only does the writing.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: PathLike, *, overwrite: bool = False, inputs: Iterable[PathLike | None] = (),
                     what: str = "output directory") -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `path` whole.

    The old directory (when `overwrite`) is moved aside only after the new one is complete, then
    removed; on any error or interrupt the temporary directory is removed and `path` is untouched.
    """
    target = check_output_dir(path, inputs=inputs, overwrite=overwrite, what=what)
    lock = target.parent / f".{target.name}.headroom-lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise HeadroomError(
            f"The {what} '{target}' is already being written by another Headroom run (lock {lock}); "
            "wait for it, or delete the lock file if that run is gone."
        ) from None
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(lock)
