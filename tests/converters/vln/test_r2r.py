"""R2R on the real val_seen file and the 7 real connectivity graphs, checked against values computed
here, independently, from the connectivity poses."""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.vln import R2RConverter
from vlaflow.schemas import ACTION, STATE, Episode, InputError, validate_episode

from .conftest import load_graph

CMD = slice(*ACTION.range("nav.command"))
WPT = slice(*ACTION.range("nav.waypoints"))
POSE = slice(*STATE.range("base.pose"))
Z = STATE.range("base.z")[0]


def convert(path, **opts):
    conv = R2RConverter(str(path), ConverterOptions(extra=opts))
    items = [x for u in conv.work_units(1 << 30) for x in conv.read(u)]
    return conv, [x for x in items if isinstance(x, Episode)], [x for x in items if isinstance(x, Rejected)]


def wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module")
def r2r_graph_run(r2r_dir):
    return convert(r2r_dir)


def test_exactly_the_covered_paths_convert(r2r_dir, r2r_graph_run):
    _, eps, rej = r2r_graph_run
    paths = json.loads((r2r_dir / "R2R_val_seen.json").read_text())
    scans = {p.name.split("_")[0] for p in (r2r_dir / "connectivity").glob("*_connectivity.json")}
    covered = [p for p in paths if p["scan"] in scans]
    assert len(paths) == 340 and sum(len(p["instructions"]) for p in paths) == 1021
    assert len(covered) == 28 and sum(len(p["instructions"]) for p in covered) == 84
    assert len(eps) == 84 and len(rej) == 937
    assert Counter(r.code for r in rej) == {"missing_connectivity": 937}
    assert all("missing connectivity" in r.reason for r in rej)
    want_ids = {f"r2r/val_seen/{p['path_id']}_{k}" for p in covered for k in range(len(p["instructions"]))}
    assert {e.episode_id for e in eps} == want_ids
    assert len({r.episode_key for r in rej} | want_ids) == 1021  # every instruction accounted for once
    four = next(p for p in paths if len(p["instructions"]) == 4)
    assert {f"r2r/val_seen/{four['path_id']}_{k}" for k in range(4)} <= {r.episode_key for r in rej} | want_ids
    by_id = {f"r2r/val_seen/{p['path_id']}_{k}": (p, t) for p in covered for k, t in enumerate(p["instructions"])}
    for e in eps:
        validate_episode(e)
        p, text = by_id[e.episode_id]
        assert e.length == len(p["path"]) and e.instruction == text and e.language == "en"
        assert e.task_family == "navigation" and e.embodiment == "nav_discrete_graph"
        assert e.extra["path_instructions"] == p["instructions"] and e.extra["scan"] == p["scan"]
        assert e.images == {} and e.is_terminal[-1] and e.action_valid.all()
        assert np.all(np.diff(e.timestamp_ns) == 1_000_000_000)  # documented 1 decision per second


def test_headings_and_waypoints_agree_with_the_poses(r2r_dir, r2r_graph_run):
    _, eps, _ = r2r_graph_run
    paths = {p["path_id"]: p for p in json.loads((r2r_dir / "R2R_val_seen.json").read_text())}
    graphs = {}
    checked = 0
    for e in eps:
        p = paths[e.extra["path_id"]]
        g = graphs.setdefault(p["scan"], load_graph(r2r_dir / "connectivity", p["scan"]))
        xyz = np.array([g[v][0] for v in p["path"]])
        floor = np.array([g[v][0][2] - g[v][1] for v in p["path"]])
        n = len(xyz)
        # R2R heading of each move: atan2(dx, dy) (0 = +y, + = right); the agent faces where it went.
        move_heading = [math.atan2(xyz[i + 1, 0] - xyz[i, 0], xyz[i + 1, 1] - xyz[i, 1]) for i in range(n - 1)]
        heading = np.array([p["heading"]] + move_heading)
        yaw = np.pi / 2 - heading  # counter-clockwise from +x
        np.testing.assert_allclose(e.state[:, POSE][:, :2], xyz[:, :2], atol=1e-5)
        np.testing.assert_allclose(wrap(e.state[:, POSE][:, 2] - yaw), 0, atol=1e-5)
        np.testing.assert_allclose(e.state[:, Z], floor, atol=1e-5)
        np.testing.assert_allclose(e.state_raw[:, 4], [p["heading"]] + list(wrap(heading[1:])), atol=1e-5)
        np.testing.assert_allclose(e.action_raw[:-1, 1], move_heading, atol=1e-5)
        cmd = e.action[:, CMD]
        dist = np.hypot(*(xyz[1:, :2] - xyz[:-1, :2]).T)
        np.testing.assert_allclose(cmd[:-1, 0], dist, atol=1e-5)
        # turn + = left = minus the change of R2R heading
        np.testing.assert_allclose(wrap(cmd[:-1, 1] + (heading[1:] - heading[:-1])), 0, atol=1e-5)
        assert np.all(cmd[:-1, 3] == 0) and cmd[-1].tolist() == [0, 0, 0, 1] and np.all(cmd[:, 2] == 0)
        # waypoints: complex-number rotation into the agent frame at each step
        z = xyz[:, 0] + 1j * xyz[:, 1]
        wp = e.action[:, WPT].reshape(n, 8, 3)
        wmask = np.broadcast_to(e.action_mask, e.action.shape)[:, WPT].reshape(n, 8, 3)
        for t in range(n):
            for k in range(1, 9):
                if t + k < n:
                    rel = (z[t + k] - z[t]) * np.exp(-1j * yaw[t])
                    np.testing.assert_allclose(wp[t, k - 1], [rel.real, rel.imag, wrap(yaw[t + k] - yaw[t])],
                                               atol=1e-4)
                    assert wmask[t, k - 1].all()
                    checked += 1
                else:
                    assert not wmask[t, k - 1].any() and np.all(wp[t, k - 1] == 0)
    assert checked > 200


def test_primitive_expansion(r2r_dir):
    conv, eps, _rej = convert(r2r_dir, primitives="true")
    assert len(eps) == 84 and conv.datasets()[0].embodiment == "nav_habitat_15deg"
    paths = {p["path_id"]: p for p in json.loads((r2r_dir / "R2R_val_seen.json").read_text())}
    step = math.radians(15)
    for e in eps:
        validate_episode(e)
        ids = e.action_raw[:, 0].astype(int)
        assert ids[-1] == 0 and set(ids[:-1]) <= {1, 2, 3}
        cmd = e.action[:, CMD]
        assert np.allclose(cmd[ids == 1, 0], 0.25) and np.allclose(cmd[ids == 2, 1], step)
        assert np.allclose(cmd[ids == 3, 1], -step)
        pose = e.state[:, POSE].astype(np.float64)
        # yaw stays on the 15 degree grid of the start yaw
        k = wrap(pose[:, 2] - pose[0, 2]) / step
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)
        # turning rows keep position; forward rows move about 0.25 m; the end is the goal viewpoint
        moves = np.hypot(*(pose[1:, :2] - pose[:-1, :2]).T)
        assert np.all(moves[ids[:-1] != 1] < 1e-5)
        p = paths[e.extra["path_id"]]
        g = load_graph(r2r_dir / "connectivity", p["scan"])
        goal = g[p["path"][-1]][0]
        np.testing.assert_allclose(pose[-1, :2], goal[:2], atol=1e-4)
        seg = np.hypot(*np.diff(np.array([g[v][0][:2] for v in p["path"]]), axis=0).T)
        assert abs(moves[ids[:-1] == 1].sum() - seg.sum()) < 1e-3
        assert np.all(np.abs(moves[ids[:-1] == 1] - 0.25) <= 0.125 + 1e-6) or seg.min() < 0.125
        assert e.extra["primitive_max_heading_snap_rad"] <= step / 2 + 1e-9
    conv30, eps30, _ = convert(r2r_dir, primitives="true", turn_deg="30")
    assert conv30.datasets()[0].embodiment == "nav_habitat_30deg"
    assert sum(e.length for e in eps30) < sum(e.length for e in eps)  # fewer, bigger turns


def _paths_with_problems(r2r_dir: Path) -> list[dict]:
    paths = json.loads((r2r_dir / "R2R_val_seen.json").read_text())
    good = next(p for p in paths if p["path_id"] == 37)
    g = load_graph(r2r_dir / "connectivity", good["scan"])
    a = good["path"][0]
    far = next(v for v in g if v != a and v not in g[a][3] and g[v][2])
    return [
        good,
        dict(good, path_id=9001, path=[a, "0" * 32]),  # unknown viewpoint
        dict(good, path_id=9002, path=[a, far]),  # not adjacent
        dict(good, path_id=9003, scan="ZZZnotAscan"),  # no graph
        dict(good, path_id=9004, scan="../../etc"),  # unsafe scan id
        {"path_id": 9005, "scan": good["scan"]},  # no instructions
        dict(good, path_id=9006, path=[]),  # empty path
    ]


def test_bad_paths_are_quarantined_with_named_reasons(r2r_dir, tmp_path):
    f = tmp_path / "R2R_mine.json"
    f.write_text(json.dumps(_paths_with_problems(r2r_dir)))
    conv, eps, rej = convert(f, connectivity=str(r2r_dir / "connectivity"))
    assert conv.files[0][0] == "mine"
    assert {e.episode_id for e in eps} == {f"r2r/mine/37_{k}" for k in range(3)}
    codes = {r.episode_key: r.code for r in rej}
    assert codes == {
        **{f"r2r/mine/9001_{k}": "unknown_viewpoint" for k in range(3)},
        **{f"r2r/mine/9002_{k}": "non_adjacent_viewpoints" for k in range(3)},
        **{f"r2r/mine/9003_{k}": "missing_connectivity" for k in range(3)},
        **{f"r2r/mine/9004_{k}": "unsafe_path" for k in range(3)},
        "r2r/mine/#5": "feature_mismatch",
        **{f"r2r/mine/9006_{k}": "feature_mismatch" for k in range(3)},
    }
    assert all(r.source.endswith(("#1", "#2", "#3", "#4", "#5", "#6")) for r in rej)


def test_input_errors_and_sniff(r2r_dir, tmp_path):
    assert R2RConverter.sniff(str(r2r_dir)) and R2RConverter.sniff(str(r2r_dir / "R2R_val_seen.json"))
    assert not R2RConverter.sniff(str(tmp_path))
    lone = tmp_path / "R2R_x.json"
    lone.write_text("[]")
    with pytest.raises(InputError, match="connectivity"):
        R2RConverter(str(lone))
    with pytest.raises(InputError, match="turn_deg"):
        R2RConverter(str(r2r_dir), ConverterOptions(extra={"turn_deg": "45"}))
    with pytest.raises(InputError, match="split"):
        R2RConverter(str(r2r_dir), ConverterOptions(split="train"))
    bad = tmp_path / "R2R_bad.json"
    bad.write_text("[{not json")
    _, eps, rej = convert(bad, connectivity=str(r2r_dir / "connectivity"))
    assert not eps and [r.code for r in rej] == ["corrupt_json"]


def test_plan_splits_a_large_file_into_slices(r2r_dir):
    conv = R2RConverter(str(r2r_dir))
    units = conv.work_units(40_000)
    assert len(units) > 5 and units[0].start == 0 and units[-1].stop is None
    assert all(a.stop == b.start for a, b in zip(units, units[1:], strict=False))
    got = [x.episode_id if isinstance(x, Episode) else x.episode_key for u in units for x in conv.read(u)]
    assert len(got) == len(set(got)) == 1021


@pytest.mark.slow
def test_ingest_end_to_end(r2r_dir, tmp_path):
    import pyarrow.parquet as pq
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.validate import validate_output

    out = tmp_path / "out"
    result = run_ingest(IngestConfig("r2r", str(r2r_dir), str(out), executor="local"))
    led = result.ledger
    assert led["balanced"] and led["episodes_in"] == 1021 and led["episodes_out"] == 84
    assert led["episodes_quarantined"] == 937 and led["by_reason"] == {"missing_connectivity": 937}
    assert led["steps_in"] == led["steps_out"] + led["steps_quarantined"]
    problems, stats = validate_output(str(out))
    assert problems == [] and stats["episodes"] == 84
    eps = pq.read_table(out / "meta/episodes.parquet").to_pylist()
    assert {e["language"] for e in eps} == {"en"}
    assert all(len(json.loads(e["extra"])["path_instructions"]) >= 3 for e in eps)
    t = pq.read_table(next(out.glob("data/r2r/val_seen/**/*.parquet")))
    prompt = t["embodiment_prompt"].combine_chunks().dictionary_decode().unique().to_pylist()
    assert len(prompt) == 1 and "edge length" in prompt[0] and "x forward, y left" in prompt[0]
