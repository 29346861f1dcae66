"""Statistics partials saved as .npz (no pickle): exact round trip on real Bridge rows, merging saved
partials of two corpora, and the files that must be refused."""
from __future__ import annotations

import copy
import io
import json
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlaflow.schemas import ACTION, InputError
from vlaflow.tokenization.statistics.accumulator import StatsAccumulator, merge_partials
from vlaflow.tokenization.statistics.kll import KLLSketch, rng_from_words, rng_words
from vlaflow.tokenization.statistics.spec import QUANTILE_KEYS, QUANTILES, STATS_VERSION, StatsSpec


def _rows(r: dict, sel, datasets=None) -> dict:
    """update_rows arguments for the selected Bridge rows; ``datasets`` relabels them per row."""
    eid = r["episode_id"]
    first = np.concatenate([[True], eid[1:] != eid[:-1]])
    return dict(datasets=r["dataset"][sel] if datasets is None else datasets[sel], embodiments=r["embodiment"][sel],
                action=r["action"][sel], action_mask=r["action_mask"][sel], action_valid=r["action_valid"][sel],
                state=r["state"][sel], state_mask=r["state_mask"][sel], is_first=first[sel])


def _merged(parts: list[StatsAccumulator]) -> StatsAccumulator:
    acc = copy.deepcopy(parts[0])  # merge adopts the other side's sketches: copy so inputs stay intact
    for p in parts[1:]:
        acc.merge(copy.deepcopy(p))
    return acc


def _resave(blob: bytes, edit) -> bytes:
    """The partial rewritten with numpy's own writer after ``edit(header, arrays)``."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    edit(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_saved_partial_merges_and_continues_exactly_like_the_live_one(bridge_rows, data):
    r = bridge_rows
    n = len(r["action"])
    spec = StatsSpec(k=data.draw(st.sampled_from([16, 64])), exact_limit=data.draw(st.sampled_from([0, 200, 16384])),
                     exclude_state=data.draw(st.sampled_from([(), ("*.gripper",)])))
    # episodes relabelled into a second dataset of the same robot: several groups per partial
    episodes = sorted(set(r["episode_id"]))
    mirrored = set(data.draw(st.lists(st.sampled_from(episodes), max_size=25)))
    datasets = np.where([e in mirrored for e in r["episode_id"]], "bridge_mirror", r["dataset"]).astype(object)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), min_size=1, max_size=4))))
    bounds = [0, *cuts, n]
    parts = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        acc = StatsAccumulator(spec, seed=data.draw(st.integers(0, 2**31)))
        acc.update_rows(**_rows(r, slice(a, b), datasets))
        parts.append(acc)
    j = data.draw(st.integers(0, len(parts) - 1), label="saved part")
    blob = parts[j].to_bytes()
    restored = StatsAccumulator.from_bytes(blob, spec)
    assert restored.to_bytes() == blob and restored.to_json() == parts[j].to_json()

    swapped = parts[:j] + [restored] + parts[j + 1:]  # restored on either side of a merge
    live, saved = _merged(parts), _merged(swapped)
    assert saved.to_bytes() == live.to_bytes()
    assert saved.to_json() == live.to_json()

    # more rows into both: identical sketches need identical generator states and group seeds
    more = slice(data.draw(st.integers(0, n - 50)), None)
    live, saved = copy.deepcopy(parts[j]), copy.deepcopy(restored)
    live.update_rows(**_rows(r, more))
    saved.update_rows(**_rows(r, more))
    assert saved.to_bytes() == live.to_bytes()


def test_partial_is_a_plain_npz_with_a_json_header(bridge_rows):
    acc = StatsAccumulator(StatsSpec(), seed=5)
    acc.update_rows(**_rows(bridge_rows, slice(None)))
    blob = acc.to_bytes()
    assert blob == copy.deepcopy(acc).to_bytes()  # deterministic: equal partials are equal files
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        header = json.loads(bytes(z["header"]).decode())
        assert all(z[k].dtype != object for k in z.files)
        count = z["g0.action.moments.count"]
    assert header["stats_version"] == STATS_VERSION and header["spec"] == StatsSpec().to_json()
    assert [g["key"] for g in header["groups"]] == ["bridge_dataset/widowx_250"]
    assert header["groups"][0]["rows"] == 500 and header["groups"][0]["episodes"] == 50
    assert count.sum() == 450 * 6  # 450 valid actions × 6 non-gripper positions


def test_rng_state_survives_as_words():
    rng = np.random.default_rng(123)
    rng.integers(2, size=7)
    rng.random(3, dtype=np.float32)  # leaves a buffered half word (has_uint32)
    words = rng_words(rng)
    assert words.dtype == np.uint64 and words.shape == (6,)
    again = rng_from_words(words)
    assert again.bit_generator.state == rng.bit_generator.state
    np.testing.assert_array_equal(again.random(5, dtype=np.float32), rng.random(5, dtype=np.float32))
    sk = KLLSketch(k=16, exact_limit=0, seed=4).update(np.arange(1000.0))
    twin = pickle.loads(pickle.dumps(sk))
    sk.update(np.arange(500.0))
    twin.update(np.arange(500.0))
    np.testing.assert_array_equal(np.concatenate(sk.levels), np.concatenate(twin.levels))


def test_two_corpora_merge_from_their_saved_partials(bridge_rows):
    """Corpus A holds the first 25 Bridge episodes, corpus B the rest under another dataset name and the
    same robot; their saved partials give the document of one pass over both, without the rows."""
    r = bridge_rows
    half = int(np.flatnonzero(r["episode_id"] == sorted(set(r["episode_id"]))[25])[0])
    datasets = np.where(np.arange(len(r["action"])) < half, "bridge_dataset", "bridge_mirror").astype(object)
    spec = StatsSpec(exclude_action=())
    a, b, both = StatsAccumulator(spec, seed=1), StatsAccumulator(spec, seed=2), StatsAccumulator(spec)
    a.update_rows(**_rows(r, slice(0, half), datasets))
    b.update_rows(**_rows(r, slice(half, None), datasets))
    both.update_rows(**_rows(r, slice(None), datasets))
    doc = merge_partials({"a/stats_partial.npz": a.to_bytes(), "b/stats_partial.npz": b.to_bytes()}).to_json()
    assert doc == _merged([a, b]).to_json()
    assert set(doc["groups"]) == {"bridge_dataset/widowx_250", "bridge_mirror/widowx_250"}
    assert doc["groups"] == both.to_json()["groups"]  # values below exact_limit: the sketches are the values
    emb = doc["embodiments"]["widowx_250"]
    assert emb["datasets"] == ["bridge_dataset", "bridge_mirror"] and emb["rows"] == 500 and emb["episodes"] == 50
    valid = r["action_valid"]
    slots = ("arm.eef_pos_delta", "arm.eef_rot_delta", "arm.gripper")  # every valid step's Bridge action
    v = np.concatenate([r["action"][valid][:, slice(*ACTION.range(s))] for s in slots], 1).astype(np.float64)
    got = {k: sum((emb["action"][s][k] for s in slots), []) for k in ("mean", "std", *QUANTILE_KEYS)}
    np.testing.assert_allclose(got["mean"], v.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["std"], v.std(0), rtol=1e-9)
    np.testing.assert_allclose([got[k] for k in QUANTILE_KEYS], np.quantile(v, QUANTILES, axis=0), rtol=1e-12)
    # one partial per group, as kept beside stats.json: any set of them merges to the same groups
    per_group = {key: part.to_bytes() for key, part in _merged([a, b]).per_group().items()}
    assert sorted(per_group) == ["bridge_dataset/widowx_250", "bridge_mirror/widowx_250"]
    assert merge_partials(per_group).to_json() == doc
    assert merge_partials([per_group["bridge_mirror/widowx_250"]]).to_json()["groups"] == {
        "bridge_mirror/widowx_250": doc["groups"]["bridge_mirror/widowx_250"]}
    # the same corpus twice counts twice: merging is a union of data, not of documents
    twice = merge_partials([a.to_bytes(), a.to_bytes()]).to_json()["groups"]["bridge_dataset/widowx_250"]
    assert twice["rows"] == 2 * half


def test_foreign_or_damaged_files_are_refused_in_one_line(bridge_rows):
    acc = StatsAccumulator(StatsSpec(k=64, exact_limit=100), seed=3)
    acc.update_rows(**_rows(bridge_rows, slice(None)))
    blob = acc.to_bytes()

    def bump_levels(header, arrays):
        arrays["g0.action.sketch.level_sizes"] = arrays["g0.action.sketch.level_sizes"] + 1

    cases = {
        "stats_version": (_resave(blob, lambda h, a: h.update(stats_version=STATS_VERSION - 1)),
                          f"stats_version {STATS_VERSION - 1}, this vlaflow reads {STATS_VERSION}"),
        "schema": (_resave(blob, lambda h, a: h.update(schema_version="0.9")), "computed on schema '0.9'"),
        "group key": (_resave(blob, lambda h, a: h["groups"][0].update(key="x/y")), "does not match its names"),
        "counts": (_resave(blob, bump_levels), "inconsistent shapes or counts"),
        "truncated": (blob[: len(blob) // 2], "not a readable vlaflow statistics partial"),
        "pickle": (pickle.dumps(acc), "not a readable vlaflow statistics partial"),
        "object array": (_resave(blob, lambda h, a: a.update({"g0.state.positions": np.array([1, "x"], object)})),
                         "not a readable vlaflow statistics partial"),
    }
    for name, (bad, msg) in cases.items():
        with pytest.raises(InputError) as err:
            StatsAccumulator.from_bytes(bad, source="b.npz")
        assert str(err.value).startswith("b.npz: ") and msg in str(err.value) and "\n" not in str(err.value), name
    # numpy's own writer is read as well: only the content matters
    assert StatsAccumulator.from_bytes(_resave(blob, lambda h, a: None)).to_bytes() == blob

    other = StatsAccumulator(StatsSpec(), seed=3)
    other.update_rows(**_rows(bridge_rows, slice(None)))
    with pytest.raises(InputError) as err:
        merge_partials({"a.npz": blob, "b.npz": other.to_bytes()})
    assert str(err.value) == ("b.npz: computed under another stats spec (k 2048 != 64, exact_limit 16384 != 100); "
                              "only partials of one spec merge")
    with pytest.raises(InputError, match="another stats spec"):
        StatsAccumulator.from_bytes(blob, StatsSpec())
    with pytest.raises(InputError, match="no statistics partials"):
        merge_partials([])
