"""Where the controller keeps what must outlive one run: its history and an unfinished rollout.

A record is one named piece of text. The local target keeps each in a file under .deploy/;
the Kubernetes target keeps them in a ConfigMap on the cluster (pr2prod.deploy.kubernetes),
so that the cluster itself, not a CI artifact that expires, says what was deployed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


class FileRecord:
    """A record in a file, replaced atomically: a kill never leaves half a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.max_chars: int | None = None

    def read(self) -> str | None:
        return self.path.read_text() if self.path.is_file() else None

    def write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(self.path.suffix + ".tmp")
        scratch.write_text(text)
        os.replace(scratch, self.path)

    def update(self, change: Change) -> None:
        # One machine, one `make` at a time: nothing writes in between.
        self.write(change(self.read()))

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def as_record(where: Path | Record) -> Record:
    return FileRecord(where) if isinstance(where, Path) else where
