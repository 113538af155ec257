"""Where ``abtest export`` writes: a local folder, or any fsspec URL (``s3://``, ``gs://``...).

Local folders keep the crash safety `abtest.export` proves at every step: each file is
written under a temporary name, fsynced, renamed, and its folder fsynced
(`abtest.export_files.write_durably`), so a final name appears complete or not at all.

Other filesystems, through fsspec:

- object stores (S3, GCS, Azure Blob / ADLS, and fsspec's ``memory://``) have no rename;
  the file is written straight to its final name.  A single PUT (or a completed multipart
  upload) is atomic there: readers see the whole object or none, never a torn file.  The
  names are deterministic (the first and last stream ids of the rows, and the
  partition), so a run that crashed before acknowledging its batch writes the same name
  with the same rows again: the object is replaced, never duplicated;
- filesystems with a rename (``hdfs://``, ``sftp://``, ``file://``...) get the local
  scheme: a hidden temporary name, then a rename to the final one.

Either way the batch is acknowledged in Redis only after its files are written; a crash
in between re-exports the same batch to the same names.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Protocol

from abtest.errors import InvalidInput
from abtest.export_files import Hook, Step, remove_stale_tmp, write_durably

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

OBJECT_STORES: Final = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}
)
"""fsspec protocols whose writes are atomic per object and that have no atomic rename."""


class Target(Protocol):
    """An export destination."""

    url: str

    def write(self, relative: PurePosixPath, write: Callable[[Any], None], hook: Hook) -> str:
        """Write one file at ``relative`` (see the module docstring); return its name."""


class LocalTarget:
    """A local folder: temp file, fsync, rename, fsync the folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self._ready = False

    def write(self, relative: PurePosixPath, write: Callable[[Any], None], hook: Hook) -> str:
        # Made at the first write, not before: a refused export (no store) leaves no folder.
        if not self._ready:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            remove_stale_tmp(self.root)
            self._ready = True
        return str(write_durably(self.root, Path(relative), write, hook))


class FsspecTarget:
    """A folder at an fsspec URL."""

    def __init__(self, fs: AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.url = fs.unstrip_protocol(self.root)
        self.atomic_put = protocol in OBJECT_STORES

    def write(self, relative: PurePosixPath, write: Callable[[Any], None], hook: Hook) -> str:
        final = f"{self.root}/{relative}"
        folder = final.rpartition("/")[0]
        self.fs.makedirs(folder, exist_ok=True)
        if self.atomic_put:
            with self.fs.open(final, "wb") as handle:
                write(handle)
            hook(Step.WRITTEN)
        else:
            tmp = f"{folder}/.{relative.name}.{secrets.token_hex(4)}.tmp"
            try:
                with self.fs.open(tmp, "wb") as handle:
                    write(handle)
                hook(Step.WRITTEN)
                self.fs.mv(tmp, final)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            hook(Step.RENAMED)
        return str(self.fs.unstrip_protocol(final))


def export_target(out: str | os.PathLike[str] | Target) -> Target:
    """The target of ``--out``: a local path (or ``file://``) or an fsspec URL (a target
    is returned as it is).

    Raises
    ------
    InvalidInput
        A URL whose filesystem library is missing (naming the extra), or a local path
        that is a file.
    """
    if isinstance(out, LocalTarget | FsspecTarget):
        return out
    text = os.fspath(out)  # type: ignore[arg-type]
    if text.lower().startswith("file://"):
        text = text[len("file://") :]
    scheme, sep, _ = text.partition("://")
    if not sep or not scheme.isidentifier():
        root = Path(text)
        if root.exists() and not root.is_dir():
            raise InvalidInput(f"{root} exists and is not a directory", "out")
        return LocalTarget(root)
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(text)
    except ImportError as exc:
        raise InvalidInput(
            f"cannot write to {text}: {exc} (pip install 'abtest[s3]' or 'abtest[gcs]')", "out"
        ) from None
    except ValueError as exc:
        raise InvalidInput(f"cannot write to {text}: {exc}", "out") from None
    return FsspecTarget(fs, path)
