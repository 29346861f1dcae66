"""The converter surface: typed --opt options, splitting inputs into work units, the episode factory,
typed unit payloads. Real-format inputs (R2R, VLN-CE, Open-X, EPIC, robosuite) are read in place."""
from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from vlaflow.converters import (ConverterOptions, Rejected, available, describe, file_units, load, option,
                                pack_ranges, record_units)
from vlaflow.converters.base import parse_options
from vlaflow.converters.episodes import EpisodeFactory
from vlaflow.media import STORAGE_OPTION_KEYS
from vlaflow.schemas import ACTION, STATE, Episode, InputError, get_embodiment, step_timestamps_ns, validate_episode

from ..conftest import SHARED

R2R = SHARED / "fixtures/vln/r2r_discrete"
VLNCE = SHARED / "fixtures/vln/vlnce_r2r/R2R_VLNCE_v1-3_preprocessed/val_seen"
EPIC_CSV = SHARED / "fixtures/ego/epic_kitchens_100_annotations/EPIC_100_validation.csv"
LIFT_RAW = SHARED / "fixtures/sim/robosuite_raw_lift_v1_4/demo.hdf5"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real fixture not found at {path} (needs ../shared beside the repo)")
    return path


def converters() -> dict[str, type]:
    return {name: load(name) for name in available()}


# -- typed options --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Demo:
    flag: bool = option(False, "a switch")
    count: int = option(3, "an integer")
    scale: float | None = option(None, "a float or nothing")
    rate: Fraction = option(Fraction(10), "an exact rate")
    turn: Literal[15, 30] = option(15, "a choice")
    name: str | None = option(None, "text")
    hexa: int = option(0, "parsed by a custom reader", parse=lambda text: int(text, 16))


def test_options_are_typed_and_defaulted():
    assert parse_options(Demo, {}, "demo") == Demo()
    got = parse_options(Demo, {"flag": "yes", "count": " 7 ", "scale": "", "rate": "30000/1001", "turn": "30",
                               "name": "x", "hexa": "ff"}, "demo")
    assert got == Demo(True, 7, None, Fraction(30000, 1001), 30, "x", 255)
    assert parse_options(Demo, {"flag": "0", "scale": "2.5", "rate": "2.5"}, "demo") == Demo(False, scale=2.5,
                                                                                            rate=Fraction(5, 2))


@pytest.mark.parametrize("key, value, expected", [
    ("flag", "maybe", "true or false"), ("count", "1.5", "an integer"), ("scale", "nan", "a finite number"),
    ("rate", "1/0", "ratio"), ("turn", "45", "one of 15, 30"), ("hexa", "zz", "int"),
])
def test_a_bad_value_is_one_line_naming_converter_key_and_type(key, value, expected):
    with pytest.raises(InputError) as info:
        parse_options(Demo, {key: value}, "demo")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"converter demo: --opt {key}={value!r}") and expected in msg


def test_unknown_keys_are_refused_the_same_way_by_every_converter():
    convs = converters()
    assert {"openx_rlds", "robomimic", "r2r", "vlnce", "vln_frames", "epic_kitchens", "egodex"} <= set(convs)
    for name, cls in convs.items():
        with pytest.raises(InputError) as info:
            parse_options(cls.Options, {"no_such_key": "1"}, name)
        msg = str(info.value)
        assert msg.startswith(f"converter {name}: unknown --opt no_such_key") and "\n" not in msg
        for f in dataclasses.fields(cls.Options):
            assert f.name in msg  # the known keys are listed
            assert f.metadata.get("help"), f"{name}: --opt {f.name} has no help"
        # frame storage is the pipeline's: every converter accepts those keys
        parse_options(cls.Options, {k: "4" if k in ("gop", "crf", "jpeg_quality") else "mp4" if k == "storage"
                                    else "h264" for k in STORAGE_OPTION_KEYS}, name)


def test_cli_flags_map_to_typed_keys():
    """--connectivity, --frames-root and --videos-root become --opt connectivity / frames / videos."""
    fields = lambda name: {f.name for f in dataclasses.fields(load(name).Options)}  # noqa: E731
    assert "connectivity" in fields("r2r") and "connectivity" in fields("rxr")
    assert {"frames", "videos"} <= fields("epic_kitchens")


def test_range_checks_and_real_converters(tmp_path):
    egodex = load("egodex")
    with pytest.raises(InputError, match=r"^converter egodex: --opt rate_hz must be in \(0, 240\]"):
        parse_options(egodex.Options, {"rate_hz": "0"}, "egodex")
    epic = load("epic_kitchens").Options
    # EPIC's fps reader keeps a decimal fps exact as the NTSC rational
    assert parse_options(epic, {"fps": "59.9400599400599", "hands": "mediapipe"}, "epic_kitchens").fps == Fraction(60000, 1001)
    r2r = load("r2r")
    with pytest.raises(InputError, match="^converter r2r: --opt primitives='sure': expected true or false$"):
        r2r(str(need(R2R)), ConverterOptions(extra={"primitives": "sure"}))
    conv = r2r(str(R2R), ConverterOptions(extra={"primitives": "on", "turn_deg": "30", "dataset": "mine"}))
    assert conv.opts.primitives and conv.opts.turn_deg == 30 and conv.datasets()[0].embodiment == "nav_habitat_30deg"
    assert conv.datasets()[0].name == "mine"


def test_describe_lists_each_converters_options():
    rows = {r["name"]: r for r in describe()}
    assert any(line.startswith("turn_deg=15 (one of 15, 30): ") for line in rows["vln_frames"]["options"])
    assert any(line.startswith("no_crc=False (true or false): ") for line in rows["openx_rlds"]["options"])


def test_unsupported_option_type_is_a_programming_error():
    @dataclass(frozen=True)
    class Bad:
        items: list = option(None, "a list")

    with pytest.raises(TypeError, match="not supported"):
        parse_options(Bad, {"items": "a,b"}, "bad")


# -- work units -----------------------------------------------------------------------------------
def test_pack_ranges():
    costs = [5, 5, 5, 20, 1, 1, 1]
    assert pack_ranges(costs, 10) == [(0, 2, 10), (2, 3, 5), (3, 4, 20), (4, 7, 3)]  # 20 > target: alone
    assert pack_ranges(costs, 10, keys="aabbbbc") == [(0, 2, 10), (2, 3, 5), (3, 4, 20), (4, 6, 2), (6, 7, 1)]
    assert pack_ranges([], 10) == []
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = rng.integers(0, 30, rng.integers(1, 40)).tolist()
        r = pack_ranges(c, 25)
        assert r[0][0] == 0 and r[-1][1] == len(c) and all(a[1] == b[0] for a, b in zip(r, r[1:]))
        assert all(acc == sum(c[a:b]) and (acc <= 25 or b - a == 1) for a, b, acc in r)
        assert all(r[i][2] + c[r[i + 1][0]] > 25 for i in range(len(r) - 1))  # greedy: no range could take more


def test_record_and_file_units():
    units = record_units("f", "train", [3, 3, 3, 3], 6, file_index=2)
    assert [(u.start, u.stop, u.nbytes, u.file_index) for u in units] == [(0, 2, 6, 2), (2, None, 6, 2)]
    assert [(u.start, u.stop) for u in file_units("f", "s", 100, 10, 1000)] == [(0, None)]  # fits: whole file
    assert [(u.start, u.stop) for u in file_units("f", "s", 100, None, 10)] == [(0, None)]  # not countable
    split = file_units("f", "s", 100, 10, 30)
    assert [(u.start, u.stop, u.nbytes) for u in split] == [(0, 3, 30), (3, 6, 30), (6, 9, 30), (9, None, 10)]


def test_real_r2r_split_file_reads_the_same_episodes_in_any_split():
    r2r = load("r2r")(str(need(R2R)))
    whole, parts = r2r.work_units(1 << 30), r2r.work_units(20_000)
    assert len(whole) == 1 and len(parts) > 5
    assert sum(u.nbytes for u in parts) == pytest.approx(whole[0].nbytes, rel=0.01)
    ids = lambda units: [it.episode_key if isinstance(it, Rejected) else it.episode_id  # noqa: E731
                         for u in units for it in r2r.read(u)]
    assert ids(parts) == ids(whole)


def test_real_rlds_shard_record_ranges_seek_to_their_records(bridge_fixture):
    from vlaflow.converters.openx_rlds.tfrecord import index_records

    conv = load("openx_rlds")(str(bridge_fixture))
    units = [u for u in conv.work_units(200_000) if u.split == "train"]
    with open(units[0].source, "rb") as f:
        records = index_records(f)
    assert len(units) > 1 and [u.offset for u in units] == [records[u.start][0] for u in units]
    assert units[-1].stop is None and units[0].payload is None  # a split shard's units read to its end
    whole = [u for u in conv.work_units(1 << 40) if u.split == "train"]
    assert whole[0].payload.count == len(records)  # dataset_info's declared count rides along
    ids = lambda us: [ep.episode_id for u in us for ep in conv.read(u)]  # noqa: E731
    assert ids(units) == ids(whole)


def test_real_epic_csv_units_hold_one_video_each(tmp_path):
    conv = load("epic_kitchens")(str(need(EPIC_CSV)), ConverterOptions(extra={"frames": str(tmp_path)}))
    rows = conv._load()
    for u in conv.work_units(1 << 20):
        assert len({r["video_id"] for r in rows[u.start:u.stop]}) == 1


# -- payloads -------------------------------------------------------------------------------------
def test_payloads_are_typed_picklable_and_fingerprint_stably():
    conv = load("vlnce")(str(need(VLNCE)))
    units = conv.work_units(50_000)
    assert len(units) > 1 and all(u.payload.gt.endswith("_gt.json.gz") and u.payload.role == "" for u in units)
    assert pickle.loads(pickle.dumps(units)) == units
    text = json.dumps([dataclasses.asdict(u) for u in units], sort_keys=True, default=str)
    assert text == json.dumps([dataclasses.asdict(u) for u in conv.work_units(50_000)], sort_keys=True, default=str)
    assert json.loads(text)[0]["payload"]["gt"] == units[0].payload.gt


def test_a_file_that_cannot_be_listed_is_one_rejection(tmp_path):
    shutil.copy(need(LIFT_RAW), tmp_path / "a_demo.hdf5")
    raw = LIFT_RAW.read_bytes()
    (tmp_path / "b_demo.hdf5").write_bytes(raw[: len(raw) // 2])
    conv = load("robomimic")(str(tmp_path))
    units = conv.work_units(1 << 30)
    bad = [u for u in units if u.source.endswith("b_demo.hdf5")]
    assert len(bad) == 1 and bad[0].payload.code == "truncated_file"
    (item,) = conv.read(bad[0])
    assert isinstance(item, Rejected) and item.code == "truncated_file" and item.episode_key.endswith("b_demo")
    good = [u for u in units if u not in bad]
    assert all(isinstance(e, tuple) and e for e in (u.payload for u in good))
    assert [ep.source_index for u in good for ep in conv.read(u)] == [e.index for u in good for e in u.payload]


# -- the episode factory --------------------------------------------------------------------------
def factory(fps=Fraction(30000, 1001), embodiment="widowx_250") -> EpisodeFactory:
    return EpisodeFactory("d", "manipulation", embodiment, fps, get_embodiment)


def test_episode_factory_fills_flags_clock_validity_and_prompt():
    make = factory()
    t = 5
    action = np.zeros((t, ACTION.width), np.float32)
    ep = make("d/0", action=action, action_mask=np.zeros(ACTION.width, bool), last_action_valid=False,
              instruction="pick", images={})
    assert ep.timestamp_ns.dtype == np.int64
    assert ep.timestamp_ns.tolist() == [round(i * 1001 * 10**9 / 30000) for i in range(t)]  # no float drift here
    assert ep.timestamp_ns.tolist() == step_timestamps_ns(t, Fraction(30000, 1001)).tolist()
    assert ep.is_first.tolist() == [True] + [False] * 4 and ep.is_last.tolist() == [False] * 4 + [True]
    assert ep.is_terminal.tolist() == ep.is_last.tolist() and ep.action_valid.tolist() == [True] * 4 + [False]
    assert ep.embodiment == "widowx_250" and ep.dataset == "d" and ep.task_family == "manipulation"
    assert ep.embodiment_prompt == get_embodiment("widowx_250").prompt(rate_hz=30000 / 1001)
    assert ep.instructions == ["pick"] and ep.action_raw.shape == (t, 0) and not ep.state_mask.any()
    assert ep.state.shape == (t, STATE.width)
    validate_episode(ep)


def test_episode_factory_source_flags_no_action_and_overrides():
    make = factory(fps=Fraction(5))
    ts = np.array([0, 90_000_000, 210_000_000])  # a measured clock (video pts)
    ep = make("d/1", timestamp_ns=ts, is_terminal=False, instruction="")
    assert ep.timestamp_ns.tolist() == ts.tolist() and not ep.is_terminal.any() and ep.instructions == []
    assert not ep.action_valid.any() and not ep.action_mask.any() and ep.action.shape == (3, ACTION.width)
    validate_episode(ep)
    src = np.array([False, True, False, True])
    ep = make("d/2", action=np.zeros((4, ACTION.width), np.float32), action_mask=np.zeros(ACTION.width, bool),
              is_first=np.arange(4) == 0, is_terminal=src, embodiment="generic")
    assert ep.is_terminal.tolist() == src.tolist() and ep.embodiment == "generic"
    assert ep.embodiment_prompt == get_embodiment("generic").prompt(rate_hz=5.0)
    with pytest.raises(ValueError, match="timestamp_ns or action"):
        make("d/3")


def test_make_episode_follows_the_converters_dataset(tmp_path):
    """A converter's episodes carry its datasets()[0]: name, family, embodiment, the prompt at its rate."""
    from .vln.conftest import make_frames_folder

    make_frames_folder(tmp_path, episodes=2)
    conv = load("vln_frames")(str(tmp_path), ConverterOptions(extra={"turn_deg": "30", "dataset": "fr"}))
    info = conv.datasets()[0]
    eps = [ep for u in conv.work_units(1 << 30) for ep in conv.read(u)]
    assert eps and all(isinstance(ep, Episode) for ep in eps)
    for ep in eps:
        validate_episode(ep)
        assert (ep.dataset, ep.task_family, ep.embodiment) == ("fr", info.task_family, "nav_habitat_30deg")
        assert ep.embodiment_prompt == get_embodiment(info.embodiment).prompt(rate_hz=float(info.fps))
        assert ep.timestamp_ns.tolist() == step_timestamps_ns(ep.length, info.fps).tolist()
