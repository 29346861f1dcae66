"""The writer paired with the episode reader: one group's episodes → one zstd Parquet shard.

It is called inside the read task rather than as a Ray Datasink: Ray's write operator tees its
input to collect statistics and so holds every block of a task until the task ends, which makes a
worker's memory grow with the shard. Here episodes stream through a bounded buffer instead.
"""
from __future__ import annotations

from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq

from vlaflow.media.shard_videos import ShardVideos
from vlaflow.schemas import Col

from .layout import ROW_GROUP_BYTES, ZSTD_LEVEL, raw_path, video_path
from .storage import HashingWriter, Output


def _leaves(name: str, t: pa.DataType) -> list[str]:
    """Parquet leaf column paths of a field (lists nest as ``.list.element``, structs by field name)."""
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        return _leaves(f"{name}.list.element", t.value_type)
    if pa.types.is_struct(t):
        return [leaf for f in t for leaf in _leaves(f"{name}.{f.name}", f.type)]
    return [name]


def column_compression(schema: pa.Schema) -> dict[str, str]:
    """zstd for everything but encoded image bytes, which zstd cannot shrink."""
    out = {}
    for f in schema:
        for leaf in _leaves(f.name, f.type):
            out[leaf] = "none" if leaf.startswith(f"{Col.IMAGES}.") and leaf.endswith(".bytes") else "zstd"
    return out


def float_columns(schema: pa.Schema) -> list[str]:
    """Float vector leaves: byte-stream-split before zstd shrinks them ~10% more (exponent bytes group)."""
    return [leaf for f in schema for leaf in _leaves(f.name, f.type)
            if leaf.endswith(".list.element") and _leaf_type(f.type) == pa.float32()]


def _leaf_type(t: pa.DataType) -> pa.DataType:
    while pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return t


def stats_columns(schema: pa.Schema) -> list[str]:
    """Min/max statistics and dictionaries, except for image bytes (statistics would copy whole frames into
    the footer, a dictionary of unique JPEGs is built only to be thrown away) and float vectors (unique
    values: dictionaries fall back, min/max of a padded vector say nothing)."""
    floats = set(float_columns(schema))
    return [c for c in column_compression(schema) if not c.startswith(f"{Col.IMAGES}.") and c not in floats]


def open_writer(where, schema: pa.Schema) -> pq.ParquetWriter:
    """The one Parquet configuration every shard is written with."""
    codecs = column_compression(schema)
    levels = {c: ZSTD_LEVEL for c, codec in codecs.items() if codec == "zstd"}
    plain = stats_columns(schema)
    return pq.ParquetWriter(where, schema, compression=codecs, compression_level=levels, use_dictionary=plain,
                            write_statistics=plain, use_byte_stream_split=float_columns(schema), store_schema=True)


class RowGroups:
    """Buffers whole episodes and writes them as row groups of about ROW_GROUP_BYTES."""

    def __init__(self, writer: pq.ParquetWriter, limit: int = ROW_GROUP_BYTES):
        self.writer, self.limit = writer, limit
        self.buf: list[pa.Table] = []
        self.nbytes = 0
        self.index = 0
        self.episode_row_group: list[int] = []

    def add(self, table: pa.Table, episodes: int) -> None:
        """``table`` holds ``episodes`` whole episodes."""
        self.buf.append(table)
        self.nbytes += table.nbytes
        self.episode_row_group.extend([self.index] * episodes)
        if self.nbytes >= self.limit:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            t = pa.concat_tables(self.buf)
            self.writer.write_table(t, row_group_size=len(t))
            self.buf, self.nbytes = [], 0
            self.index += 1


class _ParquetFile:
    """One Parquet file written to ``<rel>.tmp``, hashed while written, moved into place by ``commit``."""

    def __init__(self, out: Output, rel: str, schema: pa.Schema):
        self.out, self.rel = out, rel
        out.makedirs(rel.rsplit("/", 1)[0])
        self.tmp = out.path(rel) + ".tmp"
        self.sink = HashingWriter(out.fs.open_output_stream(self.tmp))
        self.writer = open_writer(self.sink.as_arrow(), schema)

    def close(self) -> None:
        self.writer.close()
        self.sink.close()

    def commit(self) -> None:
        self.out.fs.move(self.tmp, self.out.path(self.rel))

    def abort(self) -> None:
        for step in (self.writer.close, self.sink.close, lambda: self.out.fs.delete_file(self.tmp)):
            try:
                step()
            except Exception:  # best effort: the original error is what the caller reports
                pass


class ShardWriter:
    """Writes to ``<shard>.tmp`` and moves it into place on ``close``: a shard either exists whole
    (with its checksum computed while writing) or not at all. With a ``raw_schema`` the raw side table
    (``schemas/raw.py``) is written beside it with the same rows in the same row groups."""

    def __init__(self, out: Output, rel: str, schema: pa.Schema, raw_schema: pa.Schema | None = None):
        self.out, self.rel, self.schema = out, rel, schema
        self.file = _ParquetFile(out, rel, schema)
        self.row_groups = RowGroups(self.file.writer)
        self.raw = _ParquetFile(out, raw_path(rel), raw_schema) if raw_schema is not None else None
        self.raw_groups = RowGroups(self.raw.writer, limit=float("inf")) if self.raw is not None else None
        self.rows = self.episodes = 0
        self._videos: ShardVideos | None = None

    @property
    def videos(self) -> ShardVideos:
        """The shard's MP4s, opened when the first episode stored as video arrives."""
        if self._videos is None:
            self._videos = ShardVideos(self.out.fs, self.out.root, partial(video_path, self.rel))
        return self._videos

    def add(self, table: pa.Table, episodes: int, raw: pa.Table | None = None) -> None:
        if (raw is None) != (self.raw is None) or (raw is not None and len(raw) != len(table)):
            raise ValueError(f"{self.rel}: raw rows must come with every batch and match its rows")
        before = self.row_groups.index
        if self.raw_groups is not None:
            self.raw_groups.add(raw, episodes)
        self.row_groups.add(table, episodes)
        if self.raw_groups is not None and self.row_groups.index != before:
            self.raw_groups.flush()  # the side table's row groups end where the shard's do
        self.rows += len(table)
        self.episodes += episodes

    def abort(self) -> None:
        """After a failure: release files and temporary videos, leave nothing half-written behind."""
        for f in (self.file, self.raw):
            if f is not None:
                f.abort()
        if self._videos is not None:
            try:
                self._videos.abort()
            except Exception:  # best effort, as above
                pass

    def close(self) -> dict:
        self.row_groups.flush()
        self.file.close()
        raw = None
        if self.raw is not None:
            self.raw_groups.flush()
            self.raw.close()
            self.raw.commit()
            raw = {"path": self.raw.rel, "bytes": self.raw.sink.nbytes, "sha256": self.raw.sink.hexdigest,
                   "columns": len(self.raw.writer.schema) - 2}
        videos = self._videos.close() if self._videos is not None else []
        self.file.commit()  # last: the shard's presence means all is written
        return {"videos": videos, "raw": raw, "shard": self.rel, "rows": self.rows, "episodes": self.episodes,
                "bytes": self.file.sink.nbytes, "sha256": self.file.sink.hexdigest,
                "row_groups": self.row_groups.index, "episode_row_group": self.row_groups.episode_row_group}
