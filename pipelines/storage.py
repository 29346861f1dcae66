"""Output filesystem helpers over pyarrow.fs: a local path or any URI pyarrow/fsspec can open."""
from __future__ import annotations

import hashlib
import json
import posixpath

import pyarrow as pa
import pyarrow.fs as pafs

from vlaflow.media.fs import resolve
from vlaflow.schemas import InputError


# Roots that are read, never written: a published Hub repo (``hf://datasets/ORG/NAME``). A write there would be a
# commit made with the user's token as a side effect of a stage; stages write beside a corpus YAML instead.
READ_ONLY_SCHEMES = ("hf",)


class Output:
    """An output root; every path handed to it is relative (``meta/manifest.json``)."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.root = resolve(uri)
        self.read_only = uri.split("://", 1)[0] in READ_ONLY_SCHEMES if "://" in uri else False

    def _writable(self, rel: str) -> None:
        if self.read_only:
            raise InputError(f"{self.uri} is a published root and is only read (writing {rel} there would commit to "
                             "the Hub); list it in a corpus YAML (roots: [{path: ...}]) so results go beside the "
                             "YAML, or work on a local snapshot (huggingface_hub.snapshot_download)")

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File

    def makedirs(self, rel: str) -> None:
        self._writable(rel)
        self.fs.create_dir(self.path(rel), recursive=True)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def read_json(self, rel: str):
        return json.loads(self.read_bytes(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write via a temporary name and move, so a crash never leaves a half file in place."""
        self._writable(rel)
        self.makedirs(posixpath.dirname(rel))
        tmp = self.path(rel) + ".tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, self.path(rel))

    def write_json(self, rel: str, obj) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())

    def sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        with self.fs.open_input_stream(self.path(rel)) as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        return h.hexdigest()

    def size(self, rel: str) -> int:
        return self.fs.get_file_info(self.path(rel)).size

    def list_files(self, rel: str) -> list[str]:
        info = self.fs.get_file_info(pafs.FileSelector(self.path(rel), recursive=True, allow_not_found=True))
        return sorted(posixpath.relpath(i.path, self.root) for i in info if i.type == pafs.FileType.File)


class HashingWriter:
    """A file object that hashes what passes through, so a shard's checksum costs no re-read."""

    def __init__(self, stream):
        self._s = stream
        self._h = hashlib.sha256()
        self._n = 0
        self.closed = False

    def write(self, data) -> int:
        mv = memoryview(data)
        self._h.update(mv)
        self._s.write(mv)
        self._n += mv.nbytes
        return mv.nbytes

    def tell(self) -> int:
        return self._n

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._s.close()
            self.closed = True

    @property
    def hexdigest(self) -> str:
        return self._h.hexdigest()

    @property
    def nbytes(self) -> int:
        return self._n

    def as_arrow(self) -> pa.PythonFile:
        return pa.PythonFile(self, mode="w")
