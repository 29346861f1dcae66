"""``r2r``: Room-to-Room (``R2R_<split>.json``) paths on the Matterport3D connectivity graphs.

Each instruction of a path is its own episode, ``r2r/<split>/<path_id>_<k>``. ``--input`` is a folder
holding the split files and ``connectivity/``, or one split file (``--opt connectivity=DIR``).
"""
from __future__ import annotations

import posixpath
import re
from typing import Iterator

from vlaflow.schemas import EpisodeError, FeatureMismatch, InputError
from vlaflow.schemas.names import safe_component

from ..base import ReadItem, Rejected, WorkUnit
from .errors import CorruptJson
from .pathconv import PathConverter, as_text, path_steps

SPLIT_FILE = re.compile(r"R2R_(?P<split>[A-Za-z0-9_-]+?)\.json(?:\.gz)?")


class R2RConverter(PathConverter):
    name = "r2r"
    version = "1.0"
    description = "Room-to-Room (R2R) paths on MP3D connectivity graphs: graph moves or 15/30 deg primitives"
    dataset_name = "r2r"
    source_name = "R2R"

    split_file = SPLIT_FILE

    def __init__(self, input_path, options=None):
        self._cache: tuple[str, object] | None = None
        super().__init__(input_path, options)

    def find_files(self) -> list[tuple[str, str]]:
        src = self.src
        if src.is_file(src.root):
            base = posixpath.basename(src.root)
            m = SPLIT_FILE.fullmatch(base)
            split = m.group("split") if m else safe_component(base.split(".")[0])
            return [(split, src.root)]
        if not src.is_dir(src.root):
            raise InputError(f"{self.input_path}: not found")
        found = [(m.group("split"), i.path) for i in src.listdir(src.root)
                 if i.type.name == "File" and (m := SPLIT_FILE.fullmatch(i.base_name))]
        return sorted(found)

    def _load(self, path: str):
        """The parsed split file (a list), or the EpisodeError that parsing raised; one cached."""
        if self._cache is None or self._cache[0] != path:
            data = self.src.json_or_error(path)
            if not isinstance(data, (list, EpisodeError)):
                data = CorruptJson(f"{posixpath.basename(path)}: expected a JSON list of paths, got {type(data).__name__}")
            self._cache = (path, data)
        return self._cache[1]

    def count_entries(self, path: str) -> int | None:
        data = self._load(path)
        return len(data) if isinstance(data, list) else None

    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        data = self._load(unit.source)
        base = f"{self.dataset}/{unit.split}"
        if isinstance(data, EpisodeError):
            yield Rejected(f"{base}/{safe_component(posixpath.basename(unit.source))}", data.code, str(data), unit.source)
            return
        for index in range(unit.start, len(data) if unit.stop is None else min(unit.stop, len(data))):
            entry = data[index]
            pid = entry.get("path_id") if isinstance(entry, dict) else None
            instrs = entry.get("instructions") if isinstance(entry, dict) else None
            if pid is None or not isinstance(instrs, list) or not instrs:
                err = FeatureMismatch(f"entry {index} lacks path_id or instructions")
                yield self.reject(f"{base}/#{index}", err, unit, index, path_steps(entry))
                continue
            keys = [f"{base}/{safe_component(pid)}_{k}" for k in range(len(instrs))]
            try:
                dec = self.decisions(entry)
            except EpisodeError as err:
                for key in keys:
                    yield self.reject(key, err, unit, index, path_steps(entry))
                continue
            texts = [as_text(x) for x in instrs]
            extra = {"path_id": pid, "scan": entry.get("scan"), "path": entry.get("path"),
                     "heading": entry.get("heading"), "distance": entry.get("distance"),
                     "path_instructions": texts}
            for k, (key, text) in enumerate(zip(keys, texts, strict=True)):
                yield self.episode(dec, key=key, instruction=text, instructions=[text], language="en",
                                   unit=unit, index=index, extra=dict(extra, instruction_index=k))
