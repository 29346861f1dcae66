"""`vlaflow publish`: the call sequence against an in-memory Hub (batches, LFS pre-upload before each commit, the
card last), retries on injected 429/5xx/conflict/connection resets, an idempotent rerun, resume after a failure
midway, the token never in any output; the dry-run folder loads with `datasets.load_dataset` through the card's
configs, whose globs name exactly the shards; and the card's licenses, flags and counts."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlaflow.converters import ConverterOptions
from vlaflow.converters.ego.egodex_synth import write_egodex_episode
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines.cli import app
from vlaflow.pipelines.dataset_card import DatasetCard, config_files, is_non_commercial, license_id, size_category
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines import publish as publish_mod
from vlaflow.pipelines.publish import PLAN_FILE, PublishError, RetryPolicy, batches, plan_publish, publish
from vlaflow.pipelines.stats import run_stats

_spec = importlib.util.spec_from_file_location("hub_fake", Path(__file__).parent / "hub_fake.py")
hub_fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hub_fake)
FakeHub, http_error = hub_fake.FakeHub, hub_fake.http_error

REPO = "my-org/vla-mix"
TOKEN = "hf_vlaflowTESTtokenNEVERshown0123456789"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The sample data (bridge-like RLDS, two splits) and a mixed-family root (+ EgoDex), with statistics."""
    tmp = tmp_path_factory.mktemp("publish")
    src = write_sample_dataset(tmp / "src", episodes=6, steps=5, shards=2)
    sample = tmp / "sample"
    run_ingest(IngestConfig("openx_rlds", str(src), str(sample), executor="local"))
    mixed = tmp / "mixed"
    run_ingest(IngestConfig("openx_rlds", str(src), str(mixed), executor="local", target_shard_mb=0.02))
    ego = tmp / "ego"
    for i in range(2):
        write_egodex_episode(ego / "part1" / "fold_towel", i, n_frames=12, width=64, height=48, seed=i)
    run_ingest(IngestConfig("egodex", str(ego), str(mixed), executor="local"))
    run_stats(str(mixed), executor="local")
    mp4 = tmp / "mp4"  # frames stored as MP4 beside the shards
    run_ingest(IngestConfig("openx_rlds", str(src), str(mp4), ConverterOptions(extra={"storage": "mp4"}),
                            executor="local"))
    return {"sample": sample, "mixed": mixed, "mp4": mp4}


@pytest.fixture(autouse=True)
def _never_the_network(monkeypatch):
    """A real HfApi in these tests can never reach the Hub (huggingface_hub raises OfflineModeIsEnabled)."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _local_tree(root: Path, plan) -> dict[str, bytes]:
    return {f.path: (plan.card.encode() if f.path == "README.md" else (root / f.path).read_bytes()) for f in plan.files}


def _no_sleep(log: list):
    return RetryPolicy(sleep=log.append, base_s=1.0)


# ------------------------------------------------------------------------------------------------- the call sequence
def test_publish_sequence_batches_lfs_and_card_last(corpora):
    root = corpora["mixed"]
    hub, sleeps = FakeHub(), []
    res = publish(str(root), REPO, private=True, api=hub, policy=_no_sleep(sleeps), files_per_commit=4)
    plan = plan_publish(str(root), REPO)
    names = [c[0] for c in hub.calls]
    assert names[:2] == ["create_repo", "list_repo_tree"] and hub.calls[0][1]["private"] is True
    # then one pre-upload and one commit per batch, always in that order
    assert names[2:] == ["preupload_lfs_files", "create_commit"] * len(hub.commits)
    assert len(hub.commits) == len(res.commits) == -(-len(plan.files) // 4) and sleeps == []
    for (_, pre), (_, com) in zip(hub.calls[2::2], hub.calls[3::2]):
        assert pre["paths"] == com["paths"] and len(com["paths"]) <= 4
    # data before meta; the catalog and the card in the final commit
    assert all(p.startswith("data/") for p in hub.commits[0]["paths"])
    assert {"README.md", "meta/manifest.json"} <= set(hub.commits[-1]["paths"])
    assert not any("_work" in p for c in hub.commits for p in c["paths"])
    # the Hub now holds exactly the planned bytes; parquet went through the LFS store
    remote = hub.tree(REPO)
    remote.pop(".gitattributes")
    assert remote == _local_tree(root, plan)
    assert hub.lfs_uploads >= sum(1 for p in remote if p.endswith(".parquet"))
    assert res.uploaded_files == res.files == len(plan.files) and res.skipped_files == 0 and res.retries == {}


def test_batches_fit_the_commit_budget_and_keep_the_catalog_last(corpora):
    plan = plan_publish(str(corpora["mixed"]), REPO)
    many = [type(plan.files[0])(f"data/x/train/chunk-000/shard-{i:05d}.parquet", 1, "s", "o", "data")
            for i in range(950)] + plan.files
    groups = batches(many, max_commits=10, files_per_commit=50)
    assert len(groups) <= 10 and sum(map(len, groups)) == len(many)
    assert {"README.md", "meta/manifest.json"} <= {f.path for f in groups[-1]}
    assert [f.kind for g in groups for f in g if f.kind == "data"] == ["data"] * sum(f.kind == "data" for f in many)
    Planned = type(plan.files[0])
    # never more than 1000 files in a commit: past the budget the rest waits for the next run
    huge = [Planned(f"data/x/train/chunk-{i // 1000:03d}/shard-{i:05d}.parquet", 1, "s", "o", "data") for i in range(5000)]
    assert [len(g) for g in batches(huge, max_commits=2)] == [1000] * 5
    # regular (git) files travel inside the commit payload: at most 100 MiB of them per commit
    texts = [Planned(f"meta/datasets/d{i}/quarantine.jsonl", 9_000_000, "s", "o", "meta") for i in range(30)]
    sizes = [sum(f.bytes for f in g) for g in batches(texts)]
    assert len(sizes) == 3 and max(sizes) <= 100 << 20


def test_rerun_uploads_nothing_and_a_branch_is_created(corpora):
    root = corpora["sample"]
    hub = FakeHub()
    first = publish(str(root), REPO, api=hub, revision="v1", policy=_no_sleep([]))
    assert "create_branch" in [c[0] for c in hub.calls] and first.revision == "v1"
    assert set(hub.tree(REPO, "v1")) - {".gitattributes"} == {f.path for f in plan_publish(str(root), REPO).files}
    assert set(hub.tree(REPO, "main")) == {".gitattributes"}
    n = len(hub.calls)
    again = publish(str(root), REPO, api=hub, revision="v1", policy=_no_sleep([]))
    assert again.uploaded_files == 0 and again.commits == [] and again.skipped_files == again.files
    assert [c[0] for c in hub.calls[n:]] == ["create_repo", "create_branch", "list_repo_tree"]


def test_transient_errors_are_retried_classified_and_reported(corpora):
    root = corpora["sample"]
    hub, sleeps = FakeHub(), []
    hub.fail("list_repo_tree", 1, ConnectionResetError("Connection reset by peer"))
    hub.fail("preupload_lfs_files", 1, http_error(503, "Service Unavailable"))
    hub.fail("create_commit", 1, http_error(429, "Too Many Requests", {"Retry-After": "7"}))
    hub.fail("create_commit", 2, http_error(412, "A commit has happened since. Please refresh and try again."))
    res = publish(str(root), REPO, api=hub, policy=_no_sleep(sleeps))
    assert res.retries == {"connection": 1, "server_error": 1, "rate_limited": 1, "commit_conflict": 1}
    kinds = {e["kind"]: e for e in res.retry_events}
    assert 7 <= kinds["rate_limited"]["wait_s"] <= 7 * 1.25  # the server's Retry-After, plus jitter
    assert len(sleeps) == 4 and all(s > 0 for s in sleeps)
    remote = hub.tree(REPO)
    remote.pop(".gitattributes")
    assert remote == _local_tree(root, plan_publish(str(root), REPO))


def test_auth_errors_are_not_retried_and_read_as_one_line(corpora):
    hub, sleeps = FakeHub(), []
    hub.fail("create_repo", 1, http_error(401, "Invalid credentials in Authorization header"))
    with pytest.raises(PublishError, match="not authorized .*HF_TOKEN") as err:
        publish(str(corpora["sample"]), REPO, api=hub, policy=_no_sleep(sleeps))
    assert sleeps == [] and "\n" not in str(err.value)


def test_a_failed_run_resumes_and_uploads_only_what_is_missing(corpora):
    root = corpora["mixed"]
    hub, sleeps = FakeHub(), []
    for attempt in range(1, 4):  # the third commit fails past its retries
        hub.fail("create_commit", 2 + attempt, http_error(502, "Bad Gateway"))
    with pytest.raises(PublishError, match="commit part 3/.*still failing after 2 retries.*rerun to resume"):
        publish(str(root), REPO, api=hub, policy=RetryPolicy(max_retries=2, sleep=sleeps.append), files_per_commit=3)
    done = set(hub.tree(REPO)) - {".gitattributes"}
    assert len(done) == 6 and "README.md" not in done  # two whole commits, nothing of the third
    res = publish(str(root), REPO, api=hub, policy=_no_sleep([]), files_per_commit=3)
    plan = plan_publish(str(root), REPO)
    assert res.skipped_files == 6 and res.uploaded_files == len(plan.files) - 6
    assert not done & {p for c in hub.commits[2:] for p in c["paths"]}  # nothing re-uploaded
    remote = hub.tree(REPO)
    remote.pop(".gitattributes")
    assert remote == _local_tree(root, plan)


def test_a_changed_file_is_uploaded_again(corpora, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(corpora["sample"], root)
    hub = FakeHub()
    publish(str(root), REPO, api=hub, policy=_no_sleep([]))
    (root / "meta/quarantine.jsonl").write_text('{"note": "edited"}\n')  # not checksummed by the catalog
    res = publish(str(root), REPO, api=hub, policy=_no_sleep([]))
    assert res.uploaded_files == 1 and hub.commits[-1]["paths"] == ["meta/quarantine.jsonl"]
    (root / "data/bridge_dataset/train/chunk-000/shard-00000.parquet").write_bytes(b"not the shard")
    with pytest.raises(PublishError, match="changed since the catalog recorded it"):
        plan_publish(str(root), REPO)
    cat = json.loads((root / "meta/manifest.json").read_text())
    cat["shards"][0]["videos"] = [{"path": "../../outside.mp4", "sha256": "0" * 64}]
    (root / "meta/manifest.json").write_text(json.dumps(cat))
    with pytest.raises(PublishError, match="'../../outside.mp4', a path outside the corpus root"):
        publish(str(root), REPO, dry_run=str(tmp_path / "d"))
    assert not (tmp_path / "outside.mp4").exists()


def test_the_token_never_reaches_any_output(corpora, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub = FakeHub()
    hub.fail("create_commit", 1, http_error(429, "Too Many Requests", {"Retry-After": "0"}))
    hub.fail("preupload_lfs_files", 1, http_error(500, "Internal Error"))
    import huggingface_hub

    monkeypatch.setattr(publish_mod, "RetryPolicy", lambda: RetryPolicy(sleep=lambda s: None))
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    with monkeypatch.context() as m:
        m.setattr(huggingface_hub, "HfApi", lambda *a, **k: hub)
        ok = runner.invoke(app, ["publish", str(corpora["sample"]), "--repo-id", REPO])
    assert ok.exit_code == 0, ok.output
    assert "published" in ok.output and "1 × rate_limited" in ok.output and "1 × server_error" in ok.output
    dry = runner.invoke(app, ["publish", str(corpora["sample"]), "--repo-id", REPO, "--dry-run", str(tmp_path / "d")])
    # the real HfApi (offline mode: it never reaches the network), through the real client's error path
    off = runner.invoke(app, ["publish", str(corpora["sample"]), "--repo-id", REPO])
    assert off.exit_code == 2 and "offline mode" in off.output
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "d").rglob("*") if p.suffix in (".md", ".json"))
    everything = ok.output + dry.output + off.output + caplog.text + written
    assert "retry" in caplog.text  # the retries were logged ...
    assert TOKEN not in everything and TOKEN[3:20] not in everything  # ... and the token never


# ------------------------------------------------------------------------------------------------- dry run + card
@pytest.mark.parametrize("which", ["sample", "mixed", "mp4"])
def test_dry_run_folder_loads_with_datasets_through_the_card(corpora, tmp_path, which):
    import datasets

    root = corpora[which]
    dest = tmp_path / "dry"
    res = publish(str(root), REPO, dry_run=str(dest))
    manifest = json.loads((root / "meta/manifest.json").read_text())
    plan = json.loads((dest / PLAN_FILE).read_text())
    listed = [f["path"] for op in plan["operations"] if "files" in op for f in op["files"]]
    on_disk = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != PLAN_FILE)
    assert sorted(listed) == on_disk and res.files == len(listed)
    for f in (f for op in plan["operations"] if "files" in op for f in op["files"]):
        assert hashlib.sha256((dest / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    meta, body = DatasetCard.parse((dest / "README.md").read_text())
    assert meta["task_categories"] == ["robotics"] and meta["size_categories"] == [size_category(manifest["totals"]["rows"])]
    shards = sorted(s["path"] for s in manifest["shards"])
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert set(configs) == {"default", *manifest["datasets"]} and configs["default"]["default"] is True
    # each dataset's config selects exactly its shards; default selects all of them
    for name in manifest["datasets"]:
        picked = sorted(p for files in config_files(configs[name], on_disk).values() for p in files)
        assert picked == sorted(s["path"] for s in manifest["shards"] if s["dataset"] == name)
    assert sorted(p for files in config_files(configs["default"], on_disk).values() for p in files) == shards
    cache = str(tmp_path / "hf_cache")
    every = datasets.load_dataset(str(dest), cache_dir=cache)  # the default config
    assert sum(len(s) for s in every.values()) == manifest["totals"]["rows"]
    split = next(iter(every))
    assert type(every[split].features["images"]["primary"]).__name__ == "Image"
    if which != "mp4":
        row = next(r for r in every[split] if r["images"]["primary"] is not None)
        assert row["images"]["primary"].size[0] > 0  # decoded to a PIL image
    videos = sorted(v["path"] for s in manifest["shards"] for v in s["videos"])
    assert (which == "mp4") == bool(videos) and set(videos) <= set(on_disk)
    if videos:  # the frame references resolve inside the published folder
        assert all(r["videos"]["primary"]["path"] in videos for r in every[split].select(range(3)))
        assert "videos/<dataset>/" in body
    for name, info in manifest["ingests"].items():
        one = datasets.load_dataset(str(dest), name, cache_dir=cache)
        assert sum(len(s) for s in one.values()) == info["totals"]["rows"]
        assert set(one[next(iter(one))]["dataset"]) == {name}


def test_the_mixed_card_reads_right(corpora, tmp_path):
    publish(str(corpora["mixed"]), REPO, dry_run=str(tmp_path / "d"))
    meta, body = DatasetCard.parse((tmp_path / "d/README.md").read_text())
    assert meta["license"] == ["cc-by-4.0", "cc-by-nc-nd-4.0"]
    assert {"manipulation", "egocentric", "widowx_250", "human_hands", "non-commercial"} <= set(meta["tags"])
    assert "**Non-commercial sources:** `egodex`" in body
    assert "| `egodex` | CC BY-NC-ND 4.0 (EgoDex; non-commercial) | cc-by-nc-nd-4.0 | **no** |" in body
    for section in ("## Contents", "## Ledger", "## Schema", "## Conventions", "## Citations", "## Load it",
                    "Per embodiment:", "Per task family:"):
        assert section in body
    assert "| `action` | float32[154] |" in body and "| `trajectory` | float32[16, 106] |" in body
    assert "arXiv:2308.12952" in body and "arXiv:2505.11709" in body  # BridgeData V2, EgoDex
    assert f'load_dataset("{REPO}", "bridge_dataset"' in body and "hf://datasets/" + REPO in body
    assert "meta/stats.json" in body and "_work" not in body


def test_license_ids_and_flags():
    assert license_id("CC BY-NC 4.0 (EPIC-KITCHENS-100; non-commercial)") == "cc-by-nc-4.0"
    assert license_id("CC BY-NC-SA 3.0 US / Matterport3D Terms of Use (non-commercial)") == "cc-by-nc-sa-3.0"
    assert license_id("CC-BY-4.0") == "cc-by-4.0" and license_id("Apache-2.0") == "apache-2.0"
    assert license_id("MIT") == "mit" and license_id("unknown") == "unknown" and license_id("") == "unknown"
    assert license_id("Matterport3D Terms of Use (non-commercial research)") == "other"
    assert is_non_commercial("Matterport3D Terms of Use (non-commercial research)")
    assert is_non_commercial("CC BY-NC-ND 4.0") and not is_non_commercial("CC-BY-4.0")
    assert not is_non_commercial("MIT") and not is_non_commercial("Apache-2.0")
    assert size_category(999) == "n<1K" and size_category(1000) == "1K<n<10K" and size_category(10**13) == "n>1T"


def test_bad_input_is_a_named_one_line_error(corpora, tmp_path):
    runner = CliRunner()
    for args, want in ((["--repo-id", "noslash"], "ORG/NAME"),
                       (["--repo-id", REPO, "--dry-run", str(corpora["sample"] / "inside")], "inside the corpus root"),
                       (["--repo-id", REPO, "--with-features", "--dry-run", str(tmp_path / "x")], "no finished features")):
        r = runner.invoke(app, ["publish", str(corpora["sample"]), *args])
        assert r.exit_code == 2 and want in r.output and "Traceback" not in r.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/mine.txt").write_text("keep me")
    r = runner.invoke(app, ["publish", str(corpora["sample"]), "--repo-id", REPO, "--dry-run", str(tmp_path / "busy")])
    assert r.exit_code == 2 and "not an earlier dry run" in r.output and (tmp_path / "busy/mine.txt").exists()
    r = runner.invoke(app, ["publish", str(tmp_path / "nothing"), "--repo-id", REPO, "--dry-run", str(tmp_path / "y")])
    assert r.exit_code == 2 and "not a vlaflow ingest output" in r.output

