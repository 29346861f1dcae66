"""Fuzzing the VLN JSON readers: R2R split files (plain and gzip) and RxR guide lines built from the real
connectivity graphs, damaged at random: every entry ends up an episode or a named rejection, nothing else escapes."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.vln import R2RConverter, RxRConverter
from vlaflow.schemas import Episode, VlaflowError

from .conftest import make_rxr_lines, write_jsonl

FUZZ = settings(derandomize=True, max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=12),
                       lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                       max_leaves=20)
R2R_KEYS = ("path_id", "scan", "path", "heading", "instructions", "distance")


def _contained(conv_cls, path: Path, **opts) -> list:
    """Every item the converter yields, asserting only episodes, named rejections or a named error come out."""
    try:
        conv = conv_cls(str(path), ConverterOptions(extra=opts))
        items = [x for u in conv.work_units(1 << 30) for x in conv.read(u)]
    except VlaflowError as err:
        assert "\n" not in str(err)
        return []
    for x in items:
        assert isinstance(x, (Episode, Rejected))
        if isinstance(x, Rejected):
            assert x.code and x.reason
    return items


@pytest.fixture(scope="module")
def r2r_entries(r2r_dir) -> list[dict]:
    return json.loads((r2r_dir / "R2R_val_seen.json").read_text())[:3]


@FUZZ
@given(data=st.data())
def test_r2r_entries_with_fuzzed_fields(r2r_dir, r2r_entries, tmp_path_factory, data):
    entries = json.loads(json.dumps(r2r_entries))
    for e in entries:
        for key in data.draw(st.lists(st.sampled_from(R2R_KEYS), max_size=3)):
            if data.draw(st.booleans()):
                e.pop(key, None)
            else:
                e[key] = data.draw(JSONISH)
    folder = tmp_path_factory.mktemp("r2r")
    (folder / "R2R_fuzz.json").write_text(json.dumps(entries))
    items = _contained(R2RConverter, folder / "R2R_fuzz.json", connectivity=str(r2r_dir / "connectivity"))
    assert items  # each entry gives episodes or a rejection: nothing silently vanishes


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_r2r_files_of_arbitrary_bytes(r2r_dir, tmp_path_factory, blob, gz):
    folder = tmp_path_factory.mktemp("r2rb")
    name = "R2R_fuzz.json.gz" if gz else "R2R_fuzz.json"
    (folder / name).write_bytes(gzip.compress(blob) if gz and blob[:1] == b"[" else blob)
    _contained(R2RConverter, folder / name, connectivity=str(r2r_dir / "connectivity"))


@FUZZ
@given(st.integers(0, 10_000), st.integers(1, 255), st.integers(0, 10_000))
def test_rxr_guide_files_flipped_or_truncated(r2r_dir, tmp_path_factory, pos, xor, cut):
    folder = tmp_path_factory.mktemp("rxr")
    lines = make_rxr_lines(r2r_dir / "connectivity", ["s8pcmisQ38h"], 2, seed=pos % 7)
    path = write_jsonl(folder / "rxr_val_seen_guide.jsonl.gz", lines, gz=False)
    raw = bytearray(path.read_bytes())
    raw[pos % len(raw)] ^= xor
    raw = bytes(raw[:max(cut % (len(raw) + 1), 1)])
    path.write_bytes(gzip.compress(raw) if pos % 2 else raw[: len(raw) // 2])
    _contained(RxRConverter, folder, connectivity=str(r2r_dir / "connectivity"))
