"""``llava``: LLaVA-style conversation data — a JSON list or JSON-lines file (or a folder of them) of samples
``{"id", "image": "rel/path.jpg" | [paths] (absent: text only), "conversations": [{"from": "human"|"gpt",
"value": "<image>\\n..."}]}`` and an image folder the paths are relative to (``--opt image_folder``, default the
input's folder, as LLaVA's ``--image_folder``).

Each sample is one row (``samples.py``); its split is the file's name (``llava_v1_5_mix665k``), its episode id
``<dataset>/<split>/<index>_<id>``. The k-th ``<image>`` placeholder is the k-th image of ``image``.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Iterator

from vlaflow.schemas import DatasetInfo, EpisodeError, FeatureMismatch, InputError, NonUtf8Text
from vlaflow.schemas.names import safe_component

from ..base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option, select_splits
from ..units import record_units
from ..vln.errors import CorruptJson
from ..vln.files import Source
from .samples import check_images, image_path, map_turns, read_image, sample_episode, vl_info

SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_SAMPLE_IMAGES = 8  # images stat'ed per file to estimate a sample's bytes when planning


def _stem(path: str) -> str:
    base = posixpath.basename(path)
    for s in SUFFIXES:
        if base.lower().endswith(s):
            return base[: -len(s)]
    return base


def _image_list(entry: dict):
    value = entry.get("image", entry.get("images"))
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise FeatureMismatch(f"'image' must be a path or a list of paths, got {type(value).__name__}")


class LLaVAConverter(Converter):
    name = "llava"
    version = "1.0"
    description = "LLaVA conversation JSON/JSONL + image folder → vision_language rows (multi-turn, multi-image)"

    @dataclass(frozen=True)
    class Options:
        image_folder: str | None = option(None, "folder the samples' image paths are relative to (default: the "
                                                "input folder, or the input file's folder)")
        dataset: str | None = option(None, "dataset name (default: llava)")
        license: str = option("unknown", "license of the data (LLaVA-Instruct: CC BY 4.0 text, images under "
                                         "their sources' terms)")

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        try:
            src = Source(input_path)
            files = cls._find(src)
            if not files or files[0].endswith(".gz"):
                return False
            with src.fs.open_input_stream(files[0], compression=None) as f:
                head = f.read(4096)
            return b'"conversations"' in head and (b'"from"' in head or b'"human"' in head)
        except Exception:
            return False

    @staticmethod
    def _find(src: Source) -> list[str]:
        if src.is_file(src.root):
            return [src.root]
        if not src.is_dir(src.root):
            return []
        return [i.path for i in src.listdir(src.root) if i.type.name == "File" and i.base_name.lower().endswith(SUFFIXES)]

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        super().__init__(input_path, options)
        self.src = Source(input_path)
        if not (self.src.is_file(self.src.root) or self.src.is_dir(self.src.root)):
            raise InputError(f"{input_path}: not found")
        self.files = [(safe_component(_stem(p)), p) for p in self._find(self.src)]
        self.files = select_splits(self.files, self.options.split, input_path)
        if not self.files:
            raise InputError(f"{input_path}: no LLaVA conversation files ({', '.join(SUFFIXES)})")
        folder = self.opts.image_folder
        if folder:
            self.images = Source(folder)
            if not self.images.is_dir(self.images.root):
                raise InputError(f"--opt image_folder={folder}: not a folder")
        else:
            self.images = Source(input_path)
            if self.images.is_file(self.images.root):
                self.images.root = posixpath.dirname(self.images.root)
        self.dataset = safe_component(self.opts.dataset or "llava")
        self._cache: tuple[str, object] | None = None

    def datasets(self) -> list[DatasetInfo]:
        return [vl_info(self, self.dataset, f"{self.input_path} (LLaVA conversations; images {self.images.root})",
                        self.opts.license, ["LLaVA convention: `from` human → user, gpt → assistant; a sample "
                                            "without `image` is text only (no placeholder)"])]

    # -- reading the file ----------------------------------------------------------------------
    def _entries(self, path: str):
        """The file's samples as a list of (dict | EpisodeError) per entry, or one EpisodeError for the file."""
        if self._cache is not None and self._cache[0] == path:
            return self._cache[1]
        name = posixpath.basename(path)
        try:
            if self.src.size(path) == 0:  # an emptied file holds no samples it could account for
                raise CorruptJson(f"{name}: empty file")
            if ".jsonl" in name.lower():
                out = []
                for i, line in self.src.iter_lines(path):
                    if isinstance(line, Exception):
                        out.append(line)
                        break
                    out.append(_parse_line(line, f"{name} line {i + 1}"))
            else:
                data = self.src.read_bytes(path)
                if name.lower().endswith(".gz"):
                    import gzip
                    try:
                        data = gzip.decompress(data)
                    except (OSError, EOFError) as err:
                        raise CorruptJson(f"{name}: cannot decompress: {err}") from None
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise NonUtf8Text(f"{name}: not UTF-8 ({err.reason} at byte {err.start})") from None
                try:
                    out = json.loads(text)
                except json.JSONDecodeError as err:
                    raise CorruptJson(f"{name}: not valid JSON: {err}") from None
                if not isinstance(out, list):
                    raise CorruptJson(f"{name}: expected a JSON list of samples, got {type(out).__name__}")
        except EpisodeError as err:
            out = err
        self._cache = (path, out)
        return out

    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        units = []
        for fi, (split, path) in enumerate(self.files):
            entries = self._entries(path)
            size = max(self.src.size(path), 1)
            if isinstance(entries, EpisodeError) or not entries:
                units.append(WorkUnit(path, split, 0, None, size, 0, fi))
                continue
            counts = [len(_image_list(e)) if isinstance(e, dict) and _safe_count(e) else 0 for e in entries]
            per_image = self._mean_image_bytes(entries)
            text = size // len(entries)
            units += record_units(path, split, [text + n * per_image for n in counts], target_bytes, file_index=fi)
        return units

    def _mean_image_bytes(self, entries) -> int:
        sizes = []
        for e in entries:
            if len(sizes) >= _SAMPLE_IMAGES:
                break
            if isinstance(e, dict) and _safe_count(e):
                for rel in _image_list(e)[:1]:
                    try:
                        sizes.append(self.images.size(image_path(rel, self.images.root, "image")))
                    except Exception:  # a bad or missing path is reported when the sample is read
                        pass
        return int(sum(sizes) / len(sizes)) if sizes else 64 << 10

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        entries = self._entries(unit.source)
        base = f"{self.dataset}/{unit.split}"
        if isinstance(entries, EpisodeError):
            yield Rejected(f"{base}/{safe_component(posixpath.basename(unit.source))}", entries.code, str(entries),
                           unit.source)
            return
        stop = len(entries) if unit.stop is None else min(unit.stop, len(entries))
        for index in range(unit.start, stop):
            entry = entries[index]
            sid = entry.get("id") if isinstance(entry, dict) else None
            key = f"{base}/{index:07d}" + (f"_{safe_component(sid, 64)}" if sid not in (None, "") else "")
            try:
                if isinstance(entry, EpisodeError):
                    raise entry
                yield self._sample(entry, key, unit, index)
            except EpisodeError as err:
                yield Rejected.from_error(key, err, f"{unit.source}#{index}", 1)

    def _sample(self, entry, key: str, unit: WorkUnit, index: int):
        if not isinstance(entry, dict):
            raise FeatureMismatch(f"a sample must be a JSON object, got {type(entry).__name__}")
        rels = _image_list(entry)
        turns = check_images(map_turns(entry.get("conversations"), "conversations"), len(rels))
        images = [read_image(self.images, image_path(rel, self.images.root, f"image[{i}]"), rel)
                  for i, rel in enumerate(rels)]
        extra = {k: v for k, v in entry.items() if k not in ("conversations",)}
        return sample_episode(self, key, turns, images, split=unit.split, source_file=unit.source,
                              source_index=index, extra=extra)


def _parse_line(line: bytes, where: str):
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return NonUtf8Text(f"{where}: not UTF-8 ({err.reason} at byte {err.start})")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return CorruptJson(f"{where}: not valid JSON: {err}")
    return obj


def _safe_count(entry: dict) -> bool:
    try:
        _image_list(entry)
        return True
    except EpisodeError:
        return False
