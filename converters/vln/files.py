"""Reading JSON sources (plain, gzip, JSON lines) from a local path or URI, with named errors."""
from __future__ import annotations

import gzip
import io
import json
import posixpath
import re
import zlib
from typing import Iterator

import pyarrow.fs as pafs
from vlaflow.media.fs import resolve
from vlaflow.schemas import EpisodeError
from vlaflow.schemas.names import natural_key

from .errors import CorruptGzip, CorruptJson, UnsafePath

_GZ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError
class Source:
    """A filesystem and a root; every helper takes a path inside the filesystem."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.root = resolve(uri)

    def kind(self, path: str) -> pafs.FileType:
        return self.fs.get_file_info(path).type

    def is_file(self, path: str) -> bool:
        return self.kind(path) == pafs.FileType.File

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == pafs.FileType.Directory

    def size(self, path: str) -> int:
        return int(self.fs.get_file_info(path).size or 0)

    def listdir(self, path: str) -> list[pafs.FileInfo]:
        return sorted(self.fs.get_file_info(pafs.FileSelector(path)), key=lambda i: i.base_name)

    def files(self, folder: str, suffixes: tuple[str, ...]) -> list[str]:
        """Paths of the files in ``folder`` ending in one of ``suffixes`` (any case), in natural order
        (2.jpg before 10.jpg, whatever the zero padding)."""
        found = [i for i in self.listdir(folder) if i.type.name == "File" and i.base_name.lower().endswith(suffixes)]
        return [i.path for i in sorted(found, key=lambda i: natural_key(i.base_name))]

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path, compression=None) as f:
            return f.read()

    def read_text(self, path: str) -> str:
        """Whole file as text; ``.gz`` is decompressed (``CorruptGzip`` when that fails)."""
        data = self.read_bytes(path)
        if path.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except _GZ_ERRORS as err:
                name = posixpath.basename(path)
                raise CorruptGzip(f"{name}: cannot decompress: {type(err).__name__}: {err}") from None
        return data.decode("utf-8")

    def read_json(self, path: str):
        text = self.read_text(path)
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise CorruptJson(f"{posixpath.basename(path)}: not valid JSON: {err}") from None

    def json_or_error(self, path: str):
        """The parsed document, or the EpisodeError that reading it raised (``read`` reports it per unit)."""
        try:
            return self.read_json(path)
        except EpisodeError as err:
            return err
        except UnicodeDecodeError as err:
            return CorruptJson(f"{posixpath.basename(path)}: not UTF-8 ({err})")

    def iter_lines(self, path: str) -> Iterator[tuple[int, bytes | Exception]]:
        """(index, line) for every non-empty line of a (gzipped) JSON-lines file; a decompression
        failure ends the stream with one ``(index, CorruptGzip)``."""
        if path.endswith(".gz") and self.size(path) == 0:  # no gzip stream is 0 bytes: the file was emptied
            yield 0, CorruptGzip(f"{posixpath.basename(path)}: empty file (a gzip stream has at least a header)")
            return
        with self.fs.open_input_stream(path, compression=None) as raw:
            reader = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else io.BytesIO(raw.read())
            index = 0
            try:
                for line in reader:
                    if line.strip():
                        yield index, line
                        index += 1
            except _GZ_ERRORS as err:
                yield index, CorruptGzip(f"{posixpath.basename(path)}: decompression failed after {index} "
                                         f"lines: {type(err).__name__}: {err}")


def parse_json_line(line: bytes, where: str) -> dict:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptJson(f"{where}: not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise CorruptJson(f"{where}: a JSON line must be an object, got {type(obj).__name__}")
    return obj


def safe_relpath(rel) -> str:
    """A relative POSIX path from data, refusing absolute paths, drive letters and '..' components."""
    if not isinstance(rel, str) or not rel.strip():
        raise UnsafePath(f"frame folder {rel!r} is not a path")
    if "\\" in rel or "\x00" in rel or rel.startswith("/") or re.match(r"^[A-Za-z]:", rel) or "://" in rel:
        raise UnsafePath(f"frame folder {rel[:120]!r} is not a plain relative path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafePath(f"frame folder {rel[:120]!r} leaves the dataset folder")
    return "/".join(parts)
