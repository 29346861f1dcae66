"""The converter contract: declare what you read, yield episodes. Nothing else.

A converter knows no Ray, no sharding and no output. The pipeline asks it for *work units*
(``work_units``: small, picklable descriptions of where episodes live, with a byte size for packing) and
then, on a worker, iterates a unit with ``read`` (the one reading hook). ``read`` yields
``Episode`` objects, or ``Rejected`` for an episode it could not convert, so one bad record never
ends the unit.

Registrations travel as data: the user's embodiment specs and dataset spec are parsed on the driver
into ``ConverterOptions`` (plain dicts, pickled to workers with the options), and a converter resolves
embodiment ids through ``self.embodiments``, never through process state.

What every converter needs besides is here too, so a converter holds only its format: typed
``--opt`` keys (``Options``, parsed once by ``Converter.__init__``), ``make_episode`` (flags, clock and
prompt from ``datasets()``), and in ``units`` the splitting of inputs into work units by size.
"""
from __future__ import annotations

import abc
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Iterator, Literal, Union

import pyarrow as pa

from vlaflow.media import STORAGE_OPTION_KEYS, FrameStorage
from vlaflow.schemas import DatasetInfo, EmbodimentRegistry, Episode, EpisodeError, InputError, load_embodiment_files

from .episodes import EpisodeFactory
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
    # What the converter learned while listing work units and needs to read the unit: a frozen dataclass it defines
    # (picklable, and plain enough for ``dataclasses.asdict`` + JSON: the ingest plan's fingerprint includes it).
    payload: Any = None


@dataclass
class Rejected:
    """An episode the converter could not turn into a valid Episode."""

    episode_key: str
    code: str
    reason: str
    source: str = ""
    steps: int = 0  # source steps lost, where known

    def __post_init__(self):
        # A reason is one line in quarantine.jsonl and on the console, whatever a library's message looked like.
        if "\n" in self.reason or "\r" in self.reason:
            self.reason = "; ".join(x.strip() for x in self.reason.splitlines() if x.strip())

    @classmethod
    def from_error(cls, key: str, err: EpisodeError, source: str = "", steps: int = 0) -> "Rejected":
        return cls(key, err.code, str(err), source, steps)


ReadItem = Union[Episode, Rejected]


@dataclass
class ConverterOptions:
    """User options every converter accepts; ``extra`` (``--opt key=value``) is parsed into ``Converter.opts``.

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


def select_splits(files: list[tuple[str, str]], split_option: str | None, input_path: str) -> list[tuple[str, str]]:
    """The ``(split, path)`` pairs ``--split a,b`` keeps (all without it); a split the input lacks is one line."""
    if not split_option:
        return files
    wanted = [s.strip() for s in split_option.split(",") if s.strip()]
    have = sorted({s for s, _ in files})
    missing = [s for s in wanted if s not in have]
    if missing:
        raise InputError(f"split(s) {missing} not in {input_path}; have {have}")
    return [(s, p) for s, p in files if s in wanted]


def option(default, help: str, parse=None):
    """A field of a converter's ``Options``: its default, one line of help, and optionally a parser
    (``str -> value``, raising ValueError) where the field's type alone does not say how to read it."""
    return field(default=default, metadata={"help": help, "parse": parse})


@dataclass(frozen=True)
class NoOptions:
    """The options of a converter without ``--opt`` keys of its own."""


@lru_cache(maxsize=None)
def _shipped_embodiments(folder: Path) -> dict:
    return load_embodiment_files([folder])


class Converter(abc.ABC):
    name: str = ""
    version: str = "0"
    description: str = ""
    embodiment_dir: Path | None = None  # a plugin's own embodiment YAMLs (shipped in its package)
    # The ``--opt`` keys: a frozen dataclass whose fields (types, defaults, help) are the keys. Range checks
    # go in its ``__post_init__`` (raise ValueError: the message becomes the user's one-line error).
    Options: type = NoOptions

    def __init__(self, input_path: str, options: ConverterOptions | None = None):
        self.input_path = input_path
        self.options = options or ConverterOptions()
        self.opts = parse_options(type(self).Options, self.options.extra, self.name)
        # --opt storage & co. are the pipeline's (it applies them to every converter's frames); a converter that
        # encodes decoded frames itself (video) encodes them as they will be stored.
        self.frame_storage = FrameStorage.from_options(self.options.extra)
        self._factory: EpisodeFactory | None = None

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

    def raw_schema(self) -> pa.Schema | None:
        """The raw side table's schema (``schemas/raw.py``) when episodes carry ``raw`` columns: source
        features the unified columns have no place for, kept verbatim. The same for every work unit."""
        return None

    @classmethod
    def sniff(cls, input_path: str) -> bool:
        """Cheap check: does ``input_path`` look like this converter's format? (for ``--converter auto``, which
        takes an exception for a no)"""
        return False

    @abc.abstractmethod
    def datasets(self) -> list[DatasetInfo]:
        """The dataset(s) this input holds, with conventions and provenance."""

    @abc.abstractmethod
    def work_units(self, target_bytes: int) -> list[WorkUnit]:
        """Work units in a deterministic order; a unit above ``target_bytes`` should be split (``units``)."""

    @abc.abstractmethod
    def read(self, unit: WorkUnit) -> Iterator[ReadItem]:
        """The reading hook: yield every episode of ``unit`` in source order."""

    def warnings(self) -> list[str]:
        return []

    def make_episode(self, episode_id: str, **arrays) -> Episode:
        """An episode of ``datasets()[0]``: see ``EpisodeFactory.__call__`` for what is filled in."""
        if self._factory is None:
            info = self.datasets()[0]
            self._factory = EpisodeFactory(info.name, info.task_family, info.embodiment, info.fps,
                                           self.embodiments.get)
        return self._factory(episode_id, **arrays)


# -- typed options --------------------------------------------------------------------------------
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_options(cls: type, extra: dict, who: str):
    """``--opt`` strings → ``cls``; an unknown key or a bad value is a one-line InputError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(extra) - set(fields) - STORAGE_OPTION_KEYS)
    if unknown:
        known = ", ".join(sorted(set(fields) | STORAGE_OPTION_KEYS))
        raise InputError(f"converter {who}: unknown --opt {', '.join(unknown)} (it knows {known})")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in extra.items():
        if key not in fields:
            continue  # a pipeline key this converter does not read
        try:
            values[key] = _coerce(value, hints[key], fields[key].metadata.get("parse"))
        except (ValueError, ArithmeticError):
            raise InputError(f"converter {who}: --opt {key}={value!r}: expected {_expected(hints[key])}") from None
    try:
        return cls(**values)
    except ValueError as err:
        raise InputError(f"converter {who}: {err}") from None


def _optional(tp) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and len(typing.get_args(tp)) == 2:
            return True, inner[0]
    return False, tp


def _coerce(value, tp, parse=None):
    optional, tp = _optional(tp)
    text = str(value).strip()
    if optional and (value is None or text == ""):
        return None
    if parse is not None:
        return parse(text)
    if typing.get_origin(tp) is Literal:
        for choice in typing.get_args(tp):
            if value == choice or text == str(choice):
                return choice
        raise ValueError(text)
    if tp is bool:
        if isinstance(value, bool) or text.lower() in _TRUE + _FALSE:
            return value if isinstance(value, bool) else text.lower() in _TRUE
        raise ValueError(text)
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(text)
        return int(text)
    if tp is float:
        out = float(text)
        if not math.isfinite(out):
            raise ValueError(text)
        return out
    if tp is Fraction:
        return Fraction(text)
    if tp is str:
        return text
    raise TypeError(f"option type {tp!r} is not supported (str, int, float, bool, Fraction, Literal, X | None)")


def _expected(tp) -> str:
    optional, tp = _optional(tp)
    if typing.get_origin(tp) is Literal:
        what = "one of " + ", ".join(str(c) for c in typing.get_args(tp))
    else:
        what = {bool: "true or false", int: "an integer", float: "a finite number", str: "text",
                Fraction: "a number or a ratio such as 10 or 30000/1001"}.get(tp, str(tp))
    return what + (" (or empty for none)" if optional else "")


def option_help(cls: type) -> list[str]:
    """``key=default (type): help`` per option, for ``vlaflow converters``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(f"{f.name}={'' if default is None else default} ({_expected(hints[f.name])}): "
                   f"{f.metadata.get('help', '')}")
    return out
