"""RxR on generated guide/follower files (faithful field layout, four languages, timed words) over the
real MP3D connectivity graphs."""
from __future__ import annotations

import gzip
import json
import math
from collections import Counter

import numpy as np
import pytest
from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.vln import RxRConverter
from vlaflow.schemas import ACTION, STATE, Episode, InputError, validate_episode

from .conftest import load_graph, make_rxr_lines, write_jsonl

CMD = slice(*ACTION.range("nav.command"))
WPT = slice(*ACTION.range("nav.waypoints"))
POSE = slice(*STATE.range("base.pose"))


def convert(path, **opts):
    conv = RxRConverter(str(path), ConverterOptions(extra=opts))
    items = [x for u in conv.work_units(1 << 30) for x in conv.read(u)]
    return conv, [x for x in items if isinstance(x, Episode)], [x for x in items if isinstance(x, Rejected)]


def lines_of(path):
    return [json.loads(x) for x in gzip.decompress(path.read_bytes()).decode().splitlines()]


def test_guide_lines_become_episodes_with_language_and_timed_words(rxr_dir):
    conv, eps, rej = convert(rxr_dir)
    src = lines_of(rxr_dir / "rxr_val_seen_guide.jsonl.gz")
    assert rej == [] and len(eps) == len(src) == 12
    assert conv.datasets()[0].name == "rxr" and conv.datasets()[0].embodiment == "nav_discrete_graph"
    graphs = {}
    for e, s in zip(eps, src, strict=True):
        validate_episode(e)
        assert e.episode_id == f"rxr/val_seen/{s['instruction_id']}" and e.language == s["language"]
        assert e.instruction == s["instruction"] and e.length == len(s["path"])
        words = e.extra["timed_instruction"]
        assert [w["word"] for w in words] == s["instruction"].split()
        assert all(w.get("start_time") is None or math.isfinite(w["start_time"]) for w in words)
        assert any("start_time" not in w for w in words) and any(w.get("start_time") is None and "start_time" in w
                                                               for w in words)
        assert e.extra["annotator_id"] == s["annotator_id"] and e.extra["role"] == "guide"
        g = graphs.setdefault(s["scan"], load_graph(rxr_dir / "connectivity", s["scan"]))
        xyz = np.array([g[v][0] for v in s["path"]])
        yaw0 = math.pi / 2 - s["heading"]
        assert abs((e.state[0, POSE][2] - yaw0 + math.pi) % (2 * math.pi) - math.pi) < 1e-5
        # first waypoint = the next viewpoint seen from the start pose
        rel = complex(*(xyz[1, :2] - xyz[0, :2])) * np.exp(-1j * yaw0)
        np.testing.assert_allclose(e.action[0, WPT][:2], [rel.real, rel.imag], atol=1e-4)
        assert e.action[-1, CMD].tolist() == [0, 0, 0, 1]
    assert {e.language for e in eps} == {"en-IN", "en-US", "hi-IN", "te-IN"}


def test_follower_files_are_optional(rxr_dir, r2r_dir):
    write_jsonl(rxr_dir / "rxr_val_seen_follower.jsonl.gz",
                make_rxr_lines(r2r_dir / "connectivity", ["s8pcmisQ38h"], 3, seed=5, follower=True))
    _, eps, _ = convert(rxr_dir)
    assert len(eps) == 12
    _, eps, _ = convert(rxr_dir, follower="true")
    fol = [e for e in eps if "_follower" in e.episode_id]
    assert len(eps) == 15 and len(fol) == 3
    assert fol[0].episode_id == "rxr/val_seen/1000_follower7000" and fol[0].extra["metrics"]["ndtw"] == 1.0


def test_plain_jsonl_file_with_connectivity_option(r2r_dir, tmp_path):
    f = write_jsonl(tmp_path / "rxr_train_guide.jsonl",
                    make_rxr_lines(r2r_dir / "connectivity", ["17DRP5sb8fy"], 4, seed=2), gz=False)
    conv, eps, rej = convert(f, connectivity=str(r2r_dir / "connectivity"))
    assert len(eps) == 4 and not rej and {e.split for e in eps} == {"train"}
    units = conv.work_units(300)
    assert len(units) == 4 and [u.start for u in units] == [0, 1, 2, 3]
    assert [x.episode_id for u in units for x in conv.read(u)] == [e.episode_id for e in eps]
    with pytest.raises(InputError, match="connectivity"):
        RxRConverter(str(f))


def test_bad_lines_and_bad_gzip(rxr_dir, r2r_dir, tmp_path):
    lines = make_rxr_lines(r2r_dir / "connectivity", ["s8pcmisQ38h"], 6, seed=3)
    g = load_graph(r2r_dir / "connectivity", "s8pcmisQ38h")
    a = lines[1]["path"][0]
    far = next(v for v in g if v != a and v not in g[a][3] and g[v][2])
    lines[1]["path"] = [a, far]
    lines[2]["path"] = lines[2]["path"][:2] + ["f" * 32]
    lines[3]["scan"] = "1LXtFkjw3qL"  # a real scan without a graph here
    del lines[4]["instruction_id"]
    raw = "".join(json.dumps(d) + "\n" for d in lines)
    raw = raw.replace(json.dumps(lines[5]), "{this is not json")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "connectivity").symlink_to(r2r_dir / "connectivity", target_is_directory=True)
    (folder / "rxr_val_seen_guide.jsonl.gz").write_bytes(gzip.compress(raw.encode(), mtime=0))
    _, eps, rej = convert(folder)
    assert len(eps) == 1
    assert [r.code for r in rej] == ["non_adjacent_viewpoints", "unknown_viewpoint", "missing_connectivity",
                                     "feature_mismatch", "corrupt_json"]
    # a truncated gzip: the lines before the damage convert, the rest is one named entry
    big = make_rxr_lines(r2r_dir / "connectivity", ["s8pcmisQ38h"], 40, seed=4)
    data = gzip.compress("".join(json.dumps(d) + "\n" for d in big).encode(), mtime=0)
    (folder / "rxr_val_seen_guide.jsonl.gz").write_bytes(data[: len(data) // 2])
    _conv, eps, rej = convert(folder)
    assert 0 < len(eps) < 40 and [r.code for r in rej] == ["corrupt_gzip"]
    assert "unreadable" in rej[0].reason and rej[0].episode_key.startswith("rxr/val_seen/rxr_val_seen_guide")
    # not gzip at all
    (folder / "rxr_val_seen_guide.jsonl.gz").write_bytes(b"plain text, not gzip\n")
    _, eps, rej = convert(folder)
    assert not eps and Counter(r.code for r in rej) == {"corrupt_gzip": 1}


@pytest.mark.slow
def test_ingest_end_to_end(rxr_dir, tmp_path):
    import pyarrow.parquet as pq
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.validate import validate_output

    out = tmp_path / "out"
    led = run_ingest(IngestConfig("rxr", str(rxr_dir), str(out), executor="local")).ledger
    assert led["balanced"] and led["episodes_out"] == 12 and led["episodes_quarantined"] == 0
    problems, _ = validate_output(str(out))
    assert problems == []
    t = pq.read_table(next(out.glob("data/rxr/val_seen/**/*.parquet")),
                      columns=["episode_id", "language", "instruction"])
    langs = dict(zip(t["episode_id"].to_pylist(), t["language"].combine_chunks().dictionary_decode().to_pylist(),
                     strict=True))
    assert set(langs.values()) == {"en-IN", "en-US", "hi-IN", "te-IN"}
    assert any("सीढ़ियों" in x for x in t["instruction"].to_pylist())

    def strict(c):
        raise ValueError(f"non-standard JSON constant {c}")

    for row in pq.read_table(out / "meta/episodes.parquet").to_pylist():
        extra = json.loads(row["extra"], parse_constant=strict)
        assert extra["language"] == row["language"] == langs[row["episode_id"]] and extra["timed_instruction"]
