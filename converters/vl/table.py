"""``vl_table``: Parquet / Hugging Face ``datasets`` tables of vision-language samples — an image column plus
question/answer columns, a caption column, or a conversation column — one sample per table row.

Column names come from ``--opt`` (``image_column``, ``question_column``, ``answer_column``, ``caption_column``,
``conversation_column``, ``id_column``). An image cell is the ``datasets`` Image struct ``{bytes, path}``, raw
bytes, a path (relative to ``--opt image_folder``, default the table's folder), a list of these (several
images), or null (text only). Questions and captions never show images, so ``<image>`` placeholders (one per
image) go before the first user turn, as LLaVA lays them out; a conversation column that already has
placeholders must have one per image.

Splits follow the ``datasets`` file names (``data/train-00000-of-00004.parquet`` → ``train``), else the parent
folder's name, else the file's name.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vlaflow.schemas import DatasetInfo, EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.names import natural_key, safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option, select_splits
from ..units import pack_ranges
from ..vln.files import Source
from .samples import check_images, image_path, map_turns, read_image, sample_episode, text_of, vl_info

_SHARD = re.compile(r"(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}")


_TABLE_ERRORS = (OSError, ValueError, pa.ArrowException)  # ArrowInvalid (not Parquet, bad footer) is a ValueError


def split_of(path: str, root: str) -> str:
    stem = posixpath.basename(path).rsplit(".", 1)[0]
    m = _SHARD.fullmatch(stem)
    if m:
        return safe_component(m.group("split"))
    parent = posixpath.basename(posixpath.dirname(path))
    if posixpath.dirname(path) != root and parent not in ("", "data"):
        return safe_component(parent)
    return safe_component(stem)


@dataclass(frozen=True)
class TablePlan:
    """What planning learned of a file: row groups' row counts (a unit's ``start``/``stop`` are row groups)."""

    rows: tuple[int, ...]


class VLTableConverter(Converter):
    name = "vl_table"
    version = "1.0"
    description = "Parquet/datasets tables: image column + question/answer, caption or conversation columns"

    @dataclass(frozen=True)
    class Options:
        image_column: str = option("image", "column of the image(s): datasets Image {bytes, path}, bytes, a path, "
                                            "or a list of these")
        question_column: str = option("question", "column of the question (the user turn)")
        answer_column: str = option("answer", "column of the answer (the assistant turn; a list: its first item)")
        caption_column: str | None = option(None, "column of a caption: the assistant turn after caption_prompt")
        caption_prompt: str = option("Describe the image.", "the user turn of caption rows")
        conversation_column: str | None = option(None, "column of LLaVA-style turns [{from, value}] or chat turns "
                                                       "[{role, content}] (instead of question/answer)")
        id_column: str | None = option(None, "column of a sample id (kept in the episode id and extra)")
        image_folder: str | None = option(None, "folder image paths are relative to (default: the table's folder)")
        dataset: str | None = option(None, "dataset name (default: the input's name)")
        license: str = option("unknown", "license of the data")

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.src = Source(input_path)
        if self.src.is_file(self.src.root):
            paths = [self.src.root]
            base = posixpath.dirname(self.src.root)
        elif self.src.is_dir(self.src.root):
            import pyarrow.fs as pafs
            found = self.src.fs.get_file_info(pafs.FileSelector(self.src.root, recursive=True))
            paths = sorted((i.path for i in found if i.type.name == "File" and i.base_name.endswith(".parquet")),
                           key=natural_key)
            base = self.src.root
        else:
            raise InputError(f"{input_path}: not found")
        self.files = [(split_of(p, base), p) for p in paths]
        self.files = select_splits(self.files, self.options.split, input_path)
        if not self.files:
            raise InputError(f"{input_path}: no .parquet files")
        self.images = Source(self.opts.image_folder or input_path)
        if self.opts.image_folder and not self.images.is_dir(self.images.root):
            raise InputError(f"--opt image_folder={self.opts.image_folder}: not a folder")
        if not self.opts.image_folder:
            self.images.root = base
        self.mode, self.columns = self._columns(self._first_schema())
        default = posixpath.basename(self.src.root.rstrip("/")).rsplit(".", 1)[0]
        self.dataset = safe_component(self.opts.dataset or default)

    def _first_schema(self) -> list[str]:
        """Column names of the first readable file (a broken file is quarantined when its unit is read)."""
        errors = []
        for _, path in self.files:
            try:
                return pq.ParquetFile(path, filesystem=self.src.fs).schema_arrow.names
            except _TABLE_ERRORS as err:
                errors.append(f"{posixpath.basename(path)}: {str(err).splitlines()[0][:200] if str(err) else err}")
        raise InputError(f"{self.input_path}: no readable Parquet file ({'; '.join(errors[:3])})")

    def _columns(self, names: list[str]) -> tuple[str, list[str]]:
        """(mode, the columns to read): the mode is conversation, caption or qa, by the options and the table."""
        o = self.opts
        if o.conversation_column:
            mode, cols = "conversation", [o.conversation_column]
        elif o.caption_column:
            mode, cols = "caption", [o.caption_column]
        elif o.question_column not in names and o.answer_column not in names and "conversations" in names:
            mode, cols = "conversation", ["conversations"]
        else:
            mode, cols = "qa", [o.question_column, o.answer_column]
        cols = [o.image_column] + cols + ([o.id_column] if o.id_column else [])
        missing = [c for c in cols if c not in names]
        if missing:
            raise InputError(f"{self.input_path}: column(s) {missing} not in the table (it has {names}); name them "
                             "with --opt image_column= / question_column= / answer_column= / caption_column= / "
                             "conversation_column= / id_column=")
        return mode, cols

    def datasets(self) -> list[DatasetInfo]:
        o = self.opts
        what = {"qa": f"question `{o.question_column}`, answer `{o.answer_column}`",
                "caption": f"caption `{o.caption_column}` after the prompt {o.caption_prompt!r}",
                "conversation": f"turns `{self.columns[1]}`"}[self.mode]
        return [vl_info(self, self.dataset, f"{self.input_path} (table; images `{o.image_column}`)", o.license,
                        [f"table rows: {what}; <image> placeholders before the first user turn where the text has "
                         "none"])]

    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        units = []
        for fi, (split, path) in enumerate(self.files):
            try:
                meta = pq.ParquetFile(path, filesystem=self.src.fs).metadata
            except _TABLE_ERRORS:  # read() names what is wrong with it
                units.append(WorkUnit(path, split, 0, None, max(self.src.size(path), 1), 0, fi, None))
                continue
            costs = [max(meta.row_group(i).total_byte_size, 1) for i in range(meta.num_row_groups)]
            plan = TablePlan(tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups)))
            for a, b, acc in pack_ranges(costs, target_bytes) or [(0, 0, 1)]:
                units.append(WorkUnit(path, split, a, None if b == len(costs) else b, acc, 0, fi, plan))
        return units

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        base = f"{self.dataset}/{unit.split}"
        try:
            pf = pq.ParquetFile(unit.source, filesystem=self.src.fs)
            groups = range(unit.start, pf.num_row_groups if unit.stop is None else unit.stop)
            self._columns(pf.schema_arrow.names)
        except (*_TABLE_ERRORS, InputError) as err:  # not Parquet, or broken since planning
            msg = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            yield Rejected(f"{base}/{safe_component(posixpath.basename(unit.source))}", "corrupt_record",
                           f"{posixpath.basename(unit.source)}: {msg}", unit.source)
            return
        row = sum(pf.metadata.row_group(i).num_rows for i in range(unit.start))
        for g in groups:
            try:
                table = pf.read_row_group(g, columns=self.columns)
            except _TABLE_ERRORS as err:  # a damaged row group: each of its rows is named, the file goes on
                n = pf.metadata.row_group(g).num_rows
                msg = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
                for i in range(n):
                    yield Rejected(f"{base}/{row + i:07d}", "corrupt_record",
                                   f"{posixpath.basename(unit.source)} row group {g}: {msg}", f"{unit.source}#{row + i}")
                row += n
                continue
            cols = {c: table[c].to_pylist() for c in self.columns}
            for i in range(table.num_rows):
                index = row + i
                sid = cols[self.opts.id_column][i] if self.opts.id_column else None
                key = f"{base}/{index:07d}" + (f"_{safe_component(sid, 64)}" if sid not in (None, "") else "")
                try:
                    yield self._sample({c: cols[c][i] for c in self.columns}, key, unit, index, sid)
                except EpisodeError as err:
                    yield Rejected.from_error(key, err, f"{unit.source}#{index}", 1)
            row += table.num_rows

    def _turns(self, cells: dict) -> list[dict]:
        o = self.opts
        if self.mode == "conversation":
            return map_turns(cells[self.columns[1]], self.columns[1])
        if self.mode == "caption":
            question, answer = o.caption_prompt, cells[o.caption_column]
        else:
            question, answer = cells[o.question_column], cells[o.answer_column]
        if isinstance(answer, list):
            answer = next((a for a in answer if a not in (None, "", b"")), None)
        if question is None or answer is None:
            raise FeatureMismatch("empty question or answer")
        return map_turns([{"role": "user", "content": text_of(question, "question")},
                          {"role": "assistant", "content": text_of(answer, "answer")}], "row")

    def _images(self, cell) -> list[bytes]:
        items = [] if cell is None else cell if isinstance(cell, list) else [cell]
        out = []
        for k, item in enumerate(items):
            if isinstance(item, dict):  # datasets Image: bytes win, else the path
                data, rel = item.get("bytes"), item.get("path")
            elif isinstance(item, (bytes, bytearray)):
                data, rel = bytes(item), None
            else:
                data, rel = None, item
            if data is None:
                if rel is None:
                    raise FeatureMismatch(f"{self.opts.image_column}[{k}]: an image with neither bytes nor path")
                data = read_image(self.images, image_path(rel, self.images.root, f"{self.opts.image_column}[{k}]"), rel)
            out.append(data)
        return out

    def _sample(self, cells: dict, key: str, unit: WorkUnit, index: int, sid):
        turns = self._turns(cells)
        images = self._images(cells[self.opts.image_column])
        turns = check_images(turns, len(images), prepend=True)
        extra = {"id": sid} if sid is not None else {}
        return sample_episode(self, key, turns, images, split=unit.split, source_file=unit.source,
                              source_index=index, extra=extra)
