"""The converter contract: declare what you read, yield episodes. Nothing else.

A converter knows no Ray, no sharding and no output. The pipeline asks it for *work units*
(``plan``: small, picklable descriptions of where episodes live, with a byte size for packing) and
then, on a worker, iterates a unit with ``read`` (the one reading hook). ``read`` yields
``Episode`` objects, or ``Rejected`` for an episode it could not convert, so one bad record never
ends the unit.

Registrations travel as data: the user's embodiment specs and dataset spec are parsed on the driver
into ``ConverterOptions`` (plain dicts, pickled to workers with the options), and a converter resolves
embodiment ids through ``self.embodiments``, never through process state.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Iterator, Union

from vlaflow.schemas import DatasetInfo, EmbodimentRegistry, Episode, EpisodeError, load_embodiment_files

from .standardize import load_spec_file


@dataclass(frozen=True)
class WorkUnit:
    """A contiguous run of source episodes: a file, or a record range of one file."""

    source: str  # path or URI of the source file
    split: str = ""
    start: int = 0  # first episode (record) index in the file
    stop: int | None = None  # exclusive; None = to the end of the file
    nbytes: int = 0  # source bytes, for packing units into shards
    offset: int = 0  # byte offset of `start`, where the format can seek
    file_index: int = 0  # position of the source file in its split, for stable episode ids
    extra: tuple = ()


@dataclass
class Rejected:
    """An episode the converter could not turn into a valid Episode."""

    episode_key: str
    code: str
    reason: str
    source: str = ""
    steps: int = 0  # source steps lost, where known

    @classmethod
    def from_error(cls, key: str, err: EpisodeError, source: str = "", steps: int = 0) -> "Rejected":
        return cls(key, err.code, str(err), source, steps)


ReadItem = Union[Episode, Rejected]


@dataclass
class ConverterOptions:
    """User options every converter accepts; converters read the keys they know from ``extra``.

    Everything here is plain data: the options are pickled to every worker.
    """

    split: str | None = None  # None = every split
    spec_file: str | None = None  # where ``spec`` came from, for messages
    extra: dict = field(default_factory=dict)  # `--opt key=value` on the CLI (e.g. trust_pickle=true)
    spec: dict | None = None  # the parsed --spec (``standardize.load_spec_file``)
    embodiments: dict = field(default_factory=dict)  # id -> spec dict (``schemas.load_embodiment_files``)

    def __post_init__(self):
        # A spec_file alone is read here, where the options are built (the driver), never on a worker.
        if self.spec is None and self.spec_file:
            self.spec = load_spec_file(self.spec_file)

    def flag(self, key: str) -> bool:
        return str(self.extra.get(key, "")).lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=None)
def _shipped_embodiments(folder: Path) -> dict:
    return load_embodiment_files([folder])


class Converter(abc.ABC):
    name: str = ""
    version: str = "0"
    description: str = ""
    embodiment_dir: Path | None = None  # a plugin's own embodiment YAMLs (shipped in its package)

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        self.input_path = input_path
        self.options = options or ConverterOptions()

    @cached_property
    def embodiments(self) -> EmbodimentRegistry:
        """Where ids resolve: built-ins, then ``embodiment_dir``, then the user's ``--embodiment`` specs."""
        reg = EmbodimentRegistry.builtin()
        if self.embodiment_dir is not None:
            reg = reg.with_specs(_shipped_embodiments(Path(self.embodiment_dir)))
        return reg.with_specs(self.options.embodiments)

    def resolved_spec(self) -> dict | None:
        """The dataset spec actually used, as plain data (converters driven by a YAML spec)."""
        return None

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        """Cheap check: does ``input_path`` look like this converter's format? (for ``--converter auto``)"""
        return False

    @abc.abstractmethod
    def datasets(self) -> list[DatasetInfo]:
        """The dataset(s) this input holds, with conventions and provenance."""

    @abc.abstractmethod
    def plan(self, target_bytes: int) -> list[WorkUnit]:
        """Work units in a deterministic order; a unit above ``target_bytes`` should be split."""

    @abc.abstractmethod
    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        """The reading hook: yield every episode of ``unit`` in source order."""

    def warnings(self) -> list[str]:
        return []
