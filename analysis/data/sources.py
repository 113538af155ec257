"""Where input data live: local paths, ``file://`` and any fsspec URL (``s3://``, ``gs://``...).

A source is a DataFrame, or a path or URL naming a ``.parquet`` / ``.csv`` file or a
directory of Parquet files, searched recursively, whatever its layout: ``abtest export``'s
Hive-style ``exposures/experiment=<key>/date=<day>/`` folders and the plain
``exposures/<key>/<day>/`` folders of earlier versions read the same, because every file
carries all of its columns (the folder names are never turned into columns).  Files and
folders whose name starts with ``.`` or ``_`` (temporary files of a running export,
``_SUCCESS`` markers) are not data.

Remote URLs are opened with fsspec (``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``: the
optional extras ``abtest[s3]`` and ``abtest[gcs]``), with credentials from the usual places
of each library (environment, config files, instance metadata).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd

from abtest.errors import InvalidInput

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

Source = pd.DataFrame | str | os.PathLike[str]
"""A DataFrame, a ``.parquet`` / ``.csv`` file, or a directory of Parquet files (path or URL)."""


@dataclass(frozen=True)
class Location:
    """A path or URL resolved to what reads it.

    ``path`` is what this process opens (a local absolute path, or the URL in fsspec's
    spelling); ``given`` the URL as the user wrote it (``s3a://`` stays ``s3a://`` for
    Spark's own filesystems); ``fs`` the fsspec filesystem of a remote URL (None for local
    files).
    """

    path: str
    fs: AbstractFileSystem | None = None
    given: str = ""

    @property
    def local(self) -> bool:
        """True for a file or folder on this machine."""
        return self.fs is None

    @property
    def protocol(self) -> str:
        """The URL scheme (``s3``, ``gs``, ``memory``...); ``file`` for local paths."""
        return self.path.partition("://")[0] if not self.local else "file"

    def is_dir(self) -> bool:
        """An existing folder."""
        return Path(self.path).is_dir() if self.fs is None else bool(self.fs.isdir(self.path))

    def is_file(self) -> bool:
        """An existing file."""
        return Path(self.path).is_file() if self.fs is None else bool(self.fs.isfile(self.path))

    def join(self, *parts: str) -> Location:
        """A location below this one."""
        below = ["/".join([p.rstrip("/"), *parts]) for p in (self.path, self.url)]
        return Location(below[0], self.fs, below[1])

    @property
    def url(self) -> str:
        """The location as the user spelled it (``path`` for local files)."""
        return self.given or self.path

    def parquet_files(self) -> list[str]:
        """Data Parquet files below this folder, sorted (hidden and ``_`` names skipped)."""
        if self.fs is None:
            root = Path(self.path)
            found = [str(p) for p in root.rglob("*.parquet") if p.is_file()]
            prefix = len(str(root)) + 1
        else:
            found = [self.fs.unstrip_protocol(p) for p in self.fs.find(self.path)]
            prefix = len(self.path.rstrip("/")) + 1
        files = [p for p in found if p.endswith(".parquet") and not _hidden(p[prefix:])]
        # Path order (folder by folder), as earlier versions hashed and read them.
        return sorted(files, key=lambda p: PurePosixPath(p[prefix:].replace(os.sep, "/")).parts)

    def relative(self, file: str) -> str:
        """``file`` relative to this folder, with ``/`` separators."""
        return file[len(self.path.rstrip("/")) + 1 :].replace(os.sep, "/")

    def open(self, file: str) -> Any:
        """A binary file object of ``file`` (a path or URL below this location)."""
        if self.fs is None:
            return Path(file).open("rb")
        return self.fs.open(file, "rb")


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in PurePosixPath(relative).parts)


def is_url(text: str) -> bool:
    """A string with a scheme other than ``file://`` (``s3://...``, ``memory://...``)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() != "file" and scheme.isidentifier()


def locate(source: str | os.PathLike[str]) -> Location:
    """Resolve a path or URL; remote URLs get their fsspec filesystem.

    Raises
    ------
    InvalidInput
        An fsspec scheme whose library is not installed (naming the extra to install).
    """
    text = os.fspath(source)
    if text.lower().startswith("file://"):
        text = text[len("file://") :]
    if not is_url(text):
        return Location(str(Path(text).resolve()))
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(text)
    except ImportError as exc:
        raise InvalidInput(
            f"cannot open {text}: {exc} (install the filesystem's package, e.g. "
            "pip install 'abtest[s3]' or 'abtest[gcs]')",
            "path",
        ) from None
    except ValueError as exc:
        raise InvalidInput(f"cannot open {text}: {exc}", "path") from None
    # One spelling of every path (fsspec lists them without their scheme): its own.
    return Location(fs.unstrip_protocol(path.rstrip("/") or path), fs, text.rstrip("/"))


def fingerprint(source: Source) -> str:
    """SHA-256 of the input data, re-derivable by anyone holding the same inputs.

    Files: the bytes of every file (a folder's data Parquet files in sorted relative-path
    order, each preceded by its path), read through fsspec for URLs.  DataFrames: pandas'
    stable row hashes (`pandas.util.hash_pandas_object`, index excluded) of the columns in
    sorted order.
    """
    digest = hashlib.sha256()
    if isinstance(source, pd.DataFrame):
        frame = source[sorted(source.columns, key=str)]
        digest.update(",".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()
    location = locate(source)
    folder = location.is_dir()
    for file in location.parquet_files() if folder else [location.path]:
        if folder:
            digest.update(location.relative(file).encode() + b"\0")
        with location.open(file) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
