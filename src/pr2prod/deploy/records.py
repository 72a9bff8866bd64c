"""Where the controller keeps what must outlive one run: its history and an unfinished rollout.

A record is one named piece of text. The local target keeps each in a file under .deploy/;
the Kubernetes target keeps them in a ConfigMap on the cluster (pr2prod.deploy.kubernetes),
so that the cluster itself, not a CI artifact that expires, says what was deployed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

# Turns a record's text (None: there is none yet) into its new text.
Change = Callable[[str | None], str]


class Record(Protocol):
    name: str  # where it is, for messages: a path, or configmap/<name>:<key>
    max_chars: int | None  # the most text it can hold (a ConfigMap's is bounded)

    def read(self) -> str | None:
        """The text, or None when there is none yet."""

    def write(self, text: str) -> None:
        """Replace the text, all at once."""

    def update(self, change: Change) -> None:
        """Replace the text by `change(text)`, with no other write in between (on a
        cluster, two CI runs may write at once: neither loses the other's change)."""

    def delete(self) -> None:
        """Remove it; nothing happens when there is none."""


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` so that a reader, a crash or a power cut sees the old file or
    the new one, never half of one.

    The text goes to a temporary file of its own in the same directory (two writers never
    share one), is flushed to disk, then renamed over `path`; the directory is flushed too,
    so the rename itself survives a power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if need be) while the block runs; waits for
    another holder. The kernel releases it when its holder exits, however it exits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


class FileRecord:
    """A record in a file, replaced atomically: a kill never leaves half a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.max_chars: int | None = None

    def read(self) -> str | None:
        return self.path.read_text() if self.path.is_file() else None

    def write(self, text: str) -> None:
        write_atomically(self.path, text)

    def update(self, change: Change) -> None:
        # Two commands may append at once (`make up` beside a rollout): neither loses the
        # other's change.
        with file_lock(self.path.with_name(f".{self.path.name}.lock")):
            self.write(change(self.read()))

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def as_record(where: Path | Record) -> Record:
    return FileRecord(where) if isinstance(where, Path) else where
