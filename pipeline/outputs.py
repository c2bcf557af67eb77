"""Files a command writes: checked before the work starts, removed if the work fails.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> unwritable(folder / "missing" / "e.jsonl")  # doctest: +ELLIPSIS
'directory .../missing does not exist'
>>> unwritable(folder / "e.jsonl") is None
True
>>> try:
...     with removed_on_failure([folder / "e.jsonl"]):
...         _ = (folder / "e.jsonl").write_text("half of it")
...         raise KeyboardInterrupt
... except KeyboardInterrupt:
...     (folder / "e.jsonl").exists()
False
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["removed_on_failure", "unwritable"]


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written, or None when it can (nothing is created)."""
    parent = path.parent
    if path.is_dir():
        return f"{path} is a directory"
    if not parent.exists():
        return f"directory {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent if not path.exists() else path, os.W_OK):
        return f"permission denied: {path}"
    return None


@contextmanager
def removed_on_failure(paths: Sequence[Path]) -> Iterator[None]:
    """Delete those of ``paths`` that the block created or changed, if it raises (an error, an
    interrupt): no half-written file is left behind. A file the block did not touch stays."""
    before = {path: _identity(path) for path in paths}
    try:
        yield
    except BaseException:
        for path, was in before.items():
            now = _identity(path)
            if now is not None and now != was:
                path.unlink()
        raise


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
