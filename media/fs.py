"""Filesystem resolution shared by readers and writers: a local path, any URI pyarrow knows (s3://,
gs://, hdfs://, file://), or any fsspec protocol (wrapped for pyarrow). Here, below converters and
pipelines, because both (and the frame reader) open files through it."""
from __future__ import annotations

import os

import pyarrow.fs as pafs

from vlaflow.schemas import InputError


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/") or "/"
    except (ValueError, OSError) as arrow_err:  # ArrowInvalid (unknown scheme) is a ValueError
        try:
            import fsspec
            from pyarrow.fs import FSSpecHandler, PyFileSystem

            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError, OSError) as err:
            raise InputError(f"cannot open {uri!r}: {arrow_err}; fsspec: {err}") from None
        return PyFileSystem(FSSpecHandler(fs)), path.rstrip("/") or "/"
