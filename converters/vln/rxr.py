"""``rxr``: Room-across-Room guide (and optionally follower) annotations, ``rxr_<split>_guide.jsonl[.gz]``.

One JSON object per line: ``instruction_id, annotator_id, language (BCP-47: en-IN, en-US, hi-IN,
te-IN), path_id, scan, path, heading, instruction, timed_instruction [{word, start_time, end_time}],
edit_distance``; the same MP3D graphs and heading convention as R2R. Every line is one episode,
``rxr/<split>/<instruction_id>`` (followers: ``..._follower<demonstration_id>``); ``language`` goes
on every row and the timed words into the episodes table. ``--opt follower=true`` adds the
``*_follower.jsonl[.gz]`` files of the input folder.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Iterator

from vlaflow.schemas import EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.names import safe_component

from ..base import ReadItem, Rejected, WorkUnit, option
from .files import parse_json_line
from .pathconv import PathConverter, as_text, path_steps

SPLIT_FILE = re.compile(r"rxr_(?P<split>[A-Za-z0-9_-]+?)_(?P<role>guide|follower)\.jsonl(?:\.gz)?")
_KEEP = ("instruction_id", "annotator_id", "language", "path_id", "scan", "path", "heading", "edit_distance",
         "timed_instruction", "demonstration_id", "metrics")


class RxRConverter(PathConverter):
    name = "rxr"
    version = "1.0"
    description = "Room-across-Room (RxR) guide/follower jsonl(.gz) on MP3D graphs, BCP-47 language per row"
    dataset_name = "rxr"
    source_name = "RxR"

    split_file = SPLIT_FILE

    @dataclass(frozen=True)
    class Options(PathConverter.Options):
        follower: bool = option(False, "also read the *_follower.jsonl[.gz] files of the input folder")

    def __init__(self, input_path, options=None):
        self._counts: dict[str, int] = {}
        self._decisions: dict = {}
        super().__init__(input_path, options)

    def find_files(self) -> list[tuple[str, str]]:
        src = self.src
        if src.is_file(src.root):
            m = SPLIT_FILE.fullmatch(posixpath.basename(src.root))
            if not m:
                raise InputError(f"{self.input_path}: not an rxr_<split>_<guide|follower>.jsonl[.gz] file")
            return [(m.group("split"), src.root)]
        if not src.is_dir(src.root):
            raise InputError(f"{self.input_path}: not found")
        roles = ("guide", "follower") if self.opts.follower else ("guide",)
        found = {}
        for i in src.listdir(src.root):
            m = SPLIT_FILE.fullmatch(i.base_name)
            if m and i.type.name == "File" and m.group("role") in roles:
                key = (m.group("split"), m.group("role"))
                # prefer the .jsonl.gz when both forms are present
                if key not in found or i.base_name.endswith(".gz"):
                    found[key] = i.path
        return [(split, found[(split, role)]) for split, role in sorted(found, key=lambda k: (k[0], roles.index(k[1])))]

    def count_entries(self, path: str) -> int | None:
        if path not in self._counts:
            self._counts[path] = sum(1 for _ in self.src.iter_lines(path))
        return self._counts[path]

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        base = f"{self.dataset}/{unit.split}"
        fname = posixpath.basename(unit.source)
        follower = "_follower." in fname
        for index, line in self.src.iter_lines(unit.source):
            if index < unit.start:
                continue
            if unit.stop is not None and index >= unit.stop:
                break
            if isinstance(line, EpisodeError):
                reason = str(line) + "; the lines after it are unreadable"
                yield Rejected(f"{base}/{safe_component(fname)}#{index}", line.code, reason, f"{unit.source}#{index}")
                return
            try:
                entry = parse_json_line(line, f"{fname} line {index}")
                iid = entry.get("instruction_id")
                if iid is None:
                    raise FeatureMismatch(f"{fname} line {index}: no instruction_id")
            except EpisodeError as err:
                yield self.reject(f"{base}/#{index}", err, unit, index)
                continue
            key = f"{base}/{safe_component(iid)}"
            if follower:
                key += f"_follower{safe_component(entry.get('demonstration_id', index))}"
            try:
                dec = self._path_decisions(entry)
                text = as_text(entry.get("instruction"))
                extra = {k: entry[k] for k in _KEEP if k in entry}
                extra["role"] = "follower" if follower else "guide"
                yield self.episode(dec, key=key, instruction=text, instructions=[text] if text else [],
                                   language=as_text(entry.get("language")) or "und", unit=unit, index=index,
                                   extra=extra)
            except EpisodeError as err:
                yield self.reject(key, err, unit, index, path_steps(entry))

    def _path_decisions(self, entry: dict):
        """Several annotators describe one path: its rows are computed once (a small cache)."""
        try:
            ck = (str(entry["scan"]), tuple(map(str, entry["path"])), float(entry["heading"]))
        except (KeyError, TypeError, ValueError):
            return self.decisions(entry)  # raises the named error
        if ck not in self._decisions:
            if len(self._decisions) > 4096:
                self._decisions.clear()
            try:
                self._decisions[ck] = self.decisions(entry)
            except EpisodeError as err:
                self._decisions[ck] = err
        d = self._decisions[ck]
        if isinstance(d, EpisodeError):
            raise type(d)(str(d))
        return d
