"""Vision-language rows end to end: LLaVA and table inputs through the Ray ingest, `vlaflow validate` (CLI),
tampered conversations caught, and statistics that skip VL rows in a mixed table."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlaflow.converters import ConverterOptions
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.layout import LEDGER, QUARANTINE
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import Col
from vlaflow.schemas.invariants import check_step_table

from ..converters.vl.conftest import BAD_REASONS, GOOD, write_llava, write_vqa_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llava_out(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vl")
    src, want = write_llava(tmp / "src", jsonl=True)
    out = tmp / "out"
    result = run_ingest(IngestConfig("llava", str(src), str(out), target_shard_mb=0.002))
    return out, result, want


def test_llava_ingest_on_ray_balances_and_validates(llava_out):
    out, result, want = llava_out
    led = json.loads((out / LEDGER).read_text())
    assert led["episodes_in"] == 11 and led["episodes_out"] == GOOD
    assert led["episodes_in"] == led["episodes_out"] + led["episodes_quarantined"] and led["balanced"]
    assert led["by_reason"] == dict(BAD_REASONS, non_utf8_text=2)
    assert result.groups_total > 1  # small shards: several Ray tasks
    q = [json.loads(line) for line in (out / QUARANTINE).read_text().splitlines()]
    assert {r["code"] for r in q} == set(led["by_reason"])
    problems, stats = validate_output(str(out), check_images=True)
    assert problems == [] and stats["episodes"] == GOOD and stats["rows"] == GOOD
    t = pq.read_table(sorted(out.glob("data/**/*.parquet")))
    assert set(t[Col.TASK_FAMILY].to_pylist()) == {"vision_language"}
    conv = dict(zip(t[Col.EPISODE_ID].to_pylist(), t[Col.CONVERSATION].to_pylist()))
    bus = next(v for k, v in conv.items() if k.endswith("_000000033471"))
    assert bus[1] == {"role": "assistant", "text": "The bus in the image is white and red."}
    imgs = t[Col.IMAGES].combine_chunks()
    two = t[Col.EPISODE_ID].to_pylist().index(next(k for k in conv if k.endswith("nlvr2_dev_0")))
    assert [imgs.field(r).field("bytes")[two].as_py() for r in ("primary", "secondary")] == want["nlvr2_dev_0"]


def test_cli_validate_and_a_tampered_conversation(llava_out, tmp_path):
    out, _, _ = llava_out
    env = {**os.environ, "RAY_ADDRESS": ""}
    r = subprocess.run([sys.executable, "-m", "vlaflow.pipelines.cli", "validate", str(out)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0 and "all invariants hold" in r.stderr, r.stderr
    # an edited shard (one placeholder dropped, one role renamed): the shard checks `vlaflow validate` runs on
    # every shard name both; the file's changed checksum is reported too
    shard = sorted(out.glob("data/**/*.parquet"))[0]
    t = pq.read_table(shard)
    rows = t[Col.CONVERSATION].to_pylist()
    i = next(i for i, turns in enumerate(rows) if turns and "<image>" in turns[0]["text"])
    rows[i][0]["text"] = rows[i][0]["text"].replace("<image>", "")
    rows[i][-1]["role"] = "gpt"
    t = t.set_column(t.schema.get_field_index(Col.CONVERSATION), t.schema.field(Col.CONVERSATION),
                     pa.array(rows, t.schema.field(Col.CONVERSATION).type))
    messages = [p.message for p in check_step_table(t)]
    assert any("0 <image> placeholder(s) for 1 image(s)" in m for m in messages), messages
    assert any("role 'gpt' not in" in m for m in messages), messages
    pq.write_table(t, shard)
    problems, _ = validate_output(str(out))
    assert any("manifest says" in p for p in problems)


def test_table_ingest_local_and_ray_write_the_same_rows(tmp_path, ray_local):
    src, _ = write_vqa_table(tmp_path / "vqav2")
    opts = ConverterOptions(extra={"id_column": "question_id"})
    a = run_ingest(IngestConfig("vl_table", str(src), str(tmp_path / "a"), opts))
    b = run_ingest(IngestConfig("vl_table", str(src), str(tmp_path / "b"), opts, executor="local"))
    assert a.ledger["episodes_out"] == b.ledger["episodes_out"] == 5
    assert a.ledger["by_reason"] == {"non_utf8_text": 1} and a.ledger["balanced"]
    for out in ("a", "b"):
        assert validate_output(str(tmp_path / out), check_images=True)[0] == []
    read = lambda o: pq.read_table(sorted((tmp_path / o).glob("data/**/*.parquet")),  # noqa: E731
                                   columns=[Col.EPISODE_ID, Col.CONVERSATION]).to_pylist()
    assert read("a") == read("b")


def test_stats_skip_vision_language_rows_and_the_unified_mixture_weighs_them(tmp_path):
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset
    from vlaflow.pipelines.stats import STATS_COLUMNS, partial_from_table
    from vlaflow.tokenization.statistics.spec import StatsSpec

    robot_src = write_sample_dataset(tmp_path / "rlds", episodes=3, steps=6, shards=1)
    run_ingest(IngestConfig("openx_rlds", str(robot_src), str(tmp_path / "robot"), executor="local"))
    src, _ = write_llava(tmp_path / "llava_src")
    run_ingest(IngestConfig("llava", str(src), str(tmp_path / "vl"), executor="local"))
    robot = pq.read_table(sorted((tmp_path / "robot").glob("data/**/*.parquet")), columns=STATS_COLUMNS)
    vl = pq.read_table(sorted((tmp_path / "vl").glob("data/**/*.parquet")), columns=STATS_COLUMNS)
    mixed = pa.concat_tables([vl.slice(0, 2), robot, vl.slice(2)], promote_options="permissive")
    spec = StatsSpec()
    alone, both = partial_from_table(robot, spec, seed=1).to_json(), partial_from_table(mixed, spec, seed=1).to_json()
    assert set(both["groups"]) == set(alone["groups"]) and not any("no_body" in k for k in both["groups"])
    assert both == alone
    assert partial_from_table(vl, spec, seed=1).groups == {}
    assert np.asarray(mixed[Col.TASK_FAMILY].to_pylist()).tolist().count("vision_language") == vl.num_rows
    # the two roots' catalogs: the unified preset gives the VL family its share beside manipulation
    from vlaflow.tokenization.sampling.mixtures import catalog_datasets, get_mixture

    cat = {}
    for root in ("robot", "vl"):
        cat |= catalog_datasets(json.loads((tmp_path / root / "meta/manifest.json").read_text()))
    assert cat["llava"]["task_family"] == "vision_language" and cat["llava"]["rows"] == GOOD
    p = get_mixture("unified").resolve(cat)
    assert p == pytest.approx({"bridge_dataset": 0.6 / 0.7, "llava": 0.1 / 0.7})
