"""The ``vlaflow`` command line. Errors a user can fix print as one line, never a traceback."""
from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from vlaflow.schemas import VlaflowError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="vlaflow: embodied data (Open-X, human video, sim logs, VLN) into one Arrow schema.")
console = Console(stderr=True, soft_wrap=True)

EXIT_QUARANTINED = 3  # the run finished but some episodes were quarantined


def _disconnect_ray() -> None:
    from .ray_compat import shutdown_ray

    shutdown_ray()


def _fail(err: Exception) -> None:
    from rich.markup import escape

    msg = "; ".join(x.strip() for x in str(err).splitlines() if x.strip())  # one line, whatever a library said
    console.print(f"[bold red]error:[/] {escape(msg)}")
    raise typer.Exit(2)


@app.command()
def ingest(
    converter: str = typer.Option(..., help="converter name (see `vlaflow converters`), or `auto` to detect"),
    input: str = typer.Option(..., "--input", help="source path or URI"),
    output: str = typer.Option(..., help="output folder or URI"),
    split: str | None = typer.Option(None, help="comma-separated splits (default: all)"),
    spec: str | None = typer.Option(None, help="dataset spec YAML overriding the built-in one"),
    embodiment: list[str] = typer.Option([], help="your embodiment spec YAML (repeatable; a folder = its *.yaml)"),
    target_shard_mb: float = typer.Option(256, help="target shard size in MB (packed by source bytes)"),
    num_cpus: int | None = typer.Option(None, help="CPUs for a local Ray instance"),
    verify_images: bool = typer.Option(False, help="fully decode every image (slower)"),
    executor: str = typer.Option("auto", help="auto (this process below 64 MB of input unless RAY_ADDRESS is set, else "
                                              "Ray), ray (local or RAY_ADDRESS cluster) or local (same bytes)"),
    opt: list[str] = typer.Option([], help="converter option KEY=VALUE (repeatable), e.g. trust_pickle=true"),
    connectivity: str | None = typer.Option(None, help="VLN graph folder (r2r/rxr); same as --opt connectivity=DIR"),
    frames_root: str | None = typer.Option(None, help="epic_kitchens: folder of <video_id>/frame_%010d.jpg; "
                                              "same as --opt frames=DIR"),
    videos_root: str | None = typer.Option(None, help="epic_kitchens: folder of <video_id>.MP4; same as --opt videos=DIR"),
) -> None:
    """Convert one dataset into a corpus root: validated zstd Parquet shards + manifest + ledger.

    Several ingests (different datasets, converters, families) may share one --output."""
    from vlaflow.converters import ConverterOptions
    from vlaflow.schemas import InputError, load_embodiment_files

    from .ingest import IngestConfig, prepare, run_ingest

    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        embodiments = load_embodiment_files(embodiment)  # parsed here; the dicts travel to every worker
        extra = {}
        for item in opt:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InputError(f"--opt expects KEY=VALUE, got {item!r}")
            extra[key.strip()] = value.strip()
        for key, value in (("connectivity", connectivity), ("frames", frames_root), ("videos", videos_root)):
            if value:
                extra[key] = value
        # The options read --spec here (ConverterOptions.spec) and carry both specs to the workers as data.
        options = ConverterOptions(split=split, spec_file=spec, extra=extra, embodiments=embodiments)
        cfg = IngestConfig(converter, input, output, options, target_shard_mb, num_cpus, verify_images, executor)
        plan = prepare(cfg)
        with Progress(TextColumn("[bold]ingest"), BarColumn(), TextColumn("{task.completed}/{task.total} groups"),
                      TextColumn("{task.fields[eps]} episodes · {task.fields[rate]:.0f} episodes/s · "
                                 "{task.fields[steps]} steps"), TimeElapsedColumn(), console=console,
                      transient=False) as bar:
            task = bar.add_task("ingest", total=None, eps=0, steps=0, rate=0.0)
            t_start = [None]

            def on_progress(e, s, done, total):
                import time

                if t_start[0] is None:
                    t_start[0] = time.perf_counter()
                dt = max(time.perf_counter() - t_start[0], 1e-6)
                bar.update(task, completed=done, total=total, eps=e, steps=s, rate=e / dt)

            result = run_ingest(cfg, on_progress=on_progress, plan=plan)
        _disconnect_ray()  # a clean disconnect, so Ray's exit hooks cannot change our exit code
    except (VlaflowError, OSError) as err:  # OSError: an output path that is a file, permissions, a full disk
        _fail(err)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    led = result.ledger
    t = Table(title=f"vlaflow ingest → {output}")
    t.add_column("")
    for c in ("in", "out", "quarantined"):
        t.add_column(c, justify="right")
    t.add_row("episodes", str(led["episodes_in"]), str(led["episodes_out"]), str(led["episodes_quarantined"]))
    t.add_row("steps", str(led["steps_in"]), str(led["steps_out"]), str(led["steps_quarantined"]))
    console.print(t)
    tot = result.manifest["totals"]
    console.print(f"converter {result.manifest['converter']} {result.manifest['converter_version']}; "
                  f"{tot['shards']} shard(s), {tot['bytes'] / 1e6:.1f} MB; {result.groups_skipped} of "
                  f"{result.groups_total} group(s) already done; {result.seconds:.1f} s"
                  + (f" on {result.ray}" if result.groups_skipped < result.groups_total else "")
                  + (f"; videos {tot['video_bytes'] / 1e6:.1f} MB" if tot.get("video_bytes") else ""))
    for code, n in led["by_reason"].items():
        console.print(f"[yellow]quarantined[/] {n} × {code} (see meta/quarantine.jsonl)")
    if not led["balanced"]:
        console.print("[bold red]ledger does not balance[/]")
        raise typer.Exit(1)
    if led["episodes_quarantined"]:
        raise typer.Exit(EXIT_QUARANTINED)


@app.command()
def validate(output: str = typer.Argument(..., help="an ingest output folder or URI"),
             images: bool = typer.Option(False, help="also check every image's encoding")) -> None:
    """Check every invariant of an output: checksums, schema, step order, masks, ledger."""
    from .validate import validate_output

    try:
        problems, stats = validate_output(output, check_images=images)
    except (VlaflowError, OSError) as err:
        _fail(err)
    for p in problems[:50]:
        console.print(f"[red]✗[/] {p}")
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s)[/]")
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {stats['shards']} shard(s), {stats['episodes']} episodes, {stats['rows']} steps: "
                  "all invariants hold")


@app.command()
def corpus(path: str = typer.Argument(..., help="a corpus root (folder or URI) or a corpus YAML listing roots")) -> None:
    """List the datasets of a corpus: converter, embodiment, family, episodes, steps, quarantined."""
    from .corpus import Corpus

    try:
        c = Corpus.open(path)
    except (VlaflowError, OSError) as err:
        _fail(err)
    t = Table(title=f"corpus {path}")
    for col in ("dataset", "root", "converter", "embodiment", "family", "episodes", "steps", "quarantined", "weight"):
        t.add_column(col, justify="right" if col in ("episodes", "steps", "quarantined", "weight") else "left",
                     no_wrap=col in ("dataset", "embodiment"))
    weights = c.weights()
    for r in c.roots:
        for name in r.datasets:
            e = r.manifest.ingests[name]
            led = e.get("ledger") or {}
            t.add_row(name, r.uri, e["converter"], e["embodiment"], e["task_family"], str(e["totals"]["episodes"]),
                      str(e["totals"]["rows"]), str(led.get("episodes_quarantined", "")),
                      f"{weights[name]:g}" if name in weights else "")
    Console().print(t)


@app.command()
def converters(options: bool = typer.Option(False, "--options", help="also list each converter's --opt keys"),
               specs: bool = typer.Option(False, "--specs", help="list the built-in Open-X dataset specs instead")
               ) -> None:
    """List installed converter plugins (entry-point group `vlaflow.converters`)."""
    from vlaflow.converters import describe

    if specs:
        _print_openx_specs()
        return

    rows = describe()
    t = Table(title="converters")
    for c in ("name", "version", "entry point", "description"):
        t.add_column(c)
    for row in rows:
        t.add_row(row["name"], row["version"], row["target"], row["error"] or row["description"])
    out = Console()
    out.print(t)
    if options:
        for row in rows:
            out.print(f"[bold]{row['name']}[/] --opt keys:")
            for line in row["options"] or ["(none)"]:
                out.print(f"  {line}", markup=False)


def _print_openx_specs() -> None:
    from vlaflow.converters.openx_rlds import builtin_specs
    from vlaflow.converters.openx_rlds.catalog import catalogs

    specs = {id(s): s for s in builtin_specs().values()}.values()
    layouts = catalogs()
    t = Table(title="built-in Open-X dataset specs (--converter openx_rlds)")
    for c in ("dataset", "also resolves", "embodiment", "cameras", "catalog layout"):
        t.add_column(c)
    for s in sorted(specs, key=lambda s: s.dataset):
        t.add_row(s.dataset, ", ".join(s.aliases), s.embodiment, ", ".join(s.cameras),
                  "yes" if any(n in layouts for n in (s.dataset, *s.aliases)) else "")
    Console().print(t)


@app.command("sample-rlds")
def sample_rlds(output: str = typer.Argument(..., help="data dir to write <name>/<version>/ into"),
                episodes: int = typer.Option(40, help="episodes per split"),
                steps: int = typer.Option(12, help="steps per episode"),
                shards: int = typer.Option(2, help="TFRecord shards per split"),
                like: str = typer.Option("", help="an Open-X dataset's name: synthesize its published feature "
                                                  "layout (converters/openx_rlds/catalog/) instead of Bridge's"),
                seed: int = typer.Option(0)) -> None:
    """Write a small synthetic RLDS dataset (Bridge-like: the README's sample job input; or `--like NAME`)."""
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    if like:
        from vlaflow.converters.openx_rlds.catalog import catalog_for, write_catalog_dataset

        path = write_catalog_dataset(catalog_for(like), output, episodes=episodes, steps=steps, seed=seed)
    else:
        path = write_sample_dataset(output, episodes=episodes, steps=steps, shards=shards, seed=seed)
    print(path)


@app.command()
def stats(output: str = typer.Argument(..., help="a corpus root (folder or URI) or a corpus YAML listing roots"),
          split: str | None = typer.Option(None, help="comma-separated splits (default: all)"),
          exclude: list[str] = typer.Option(["action:*.gripper"], help="KIND:SLOT-PATTERN without statistics "
                                            "(repeatable; KIND = action or state); `--exclude none` keeps all"),
          k: int = typer.Option(2048, help="KLL sketch size (rank error about 2.3/k^0.97)"),
          force: bool = typer.Option(False, help="recompute even when meta/stats.json is current"),
          num_cpus: int | None = typer.Option(None, help="CPUs for a local Ray instance"),
          executor: str = typer.Option("auto", help="auto (this process below 64 MB of shards unless RAY_ADDRESS "
                                                    "is set), ray or local (same bytes)")) -> None:
    """Per-(dataset, embodiment) statistics and quantiles, and per embodiment merged across datasets."""
    from vlaflow.schemas import InputError
    from vlaflow.tokenization.statistics.spec import StatsSpec

    from .stats import run_stats

    try:
        excl: dict[str, list[str]] = {"action": [], "state": []}
        for item in exclude:
            if item == "none":
                continue
            kind, sep, pattern = item.partition(":")
            if not sep or kind not in excl or not pattern:
                raise InputError(f"--exclude expects action:PATTERN or state:PATTERN, got {item!r}")
            excl[kind].append(pattern)
        spec = StatsSpec(exclude_action=tuple(excl["action"]), exclude_state=tuple(excl["state"]), k=k)
        splits = [s.strip() for s in split.split(",") if s.strip()] if split else None
        result = run_stats(output, spec, splits, force=force, num_cpus=num_cpus, executor=executor)
        _disconnect_ray()
    except (VlaflowError, OSError) as err:
        _fail(err)
    doc = result.stats
    t = Table(title=f"vlaflow stats → {result.path}")
    traj = any(g.get("trajectory") for g in doc["groups"].values())
    cols = ("group", "rows", "episodes", "action slots", "state slots") + (("trajectory",) if traj else ())
    for c in cols:
        t.add_column(c, justify="left" if c == "group" else "right", no_wrap=c == "group")
    for key, g in doc["groups"].items():
        t.add_row(key, str(g["rows"]), str(g["episodes"]), str(len(g["action"])), str(len(g["state"])),
                  *((str(len(g["trajectory"])),) if traj else ()))
    console.print(t)
    if len({g["dataset"] for g in doc["groups"].values()}) > 1:
        e = Table(title="merged per embodiment")
        for c in ("embodiment", "datasets", "rows", "episodes"):
            e.add_column(c, justify="left" if c in ("embodiment", "datasets") else "right")
        for emb, g in doc["embodiments"].items():
            e.add_row(emb, ", ".join(g["datasets"]), str(g["rows"]), str(g["episodes"]))
        console.print(e)
    how = "read back from the cache (manifest unchanged)" if result.cached else f"computed on {result.ray}"
    console.print(f"{len(doc['groups'])} group(s), {doc['rows']} rows; {how} in {result.seconds:.2f} s")


@app.command()
def features(output: str = typer.Argument(..., help="a corpus root (folder or URI)"),
             encoder: str = typer.Option("google/siglip-base-patch16-224", help="Hub id (from the local cache) "
                                         "or a local folder saved with save_pretrained: SigLIP/SigLIP2, CLIP, "
                                         "DINOv2, ViT, or a Qwen2.5-VL/Qwen2-VL checkpoint (its vision tower "
                                         "only)"),
             tokens: int = typer.Option(0, help="also store k patch tokens per frame (adaptive-avg-pooled)"),
             batch_size: int = typer.Option(32, help="frames per encoder forward"),
             dtype: str = typer.Option("float16", help="storage dtype: float16 or bfloat16"),
             executor: str = typer.Option("ray", help="ray (an actor pool) or local (this process, same bytes)"),
             num_gpus: float = typer.Option(0, help="GPUs per encoder actor (0: CPU)"),
             num_cpus: int | None = typer.Option(None, help="CPUs for a local Ray instance"),
             key: str | None = typer.Option(None, help="folder name under OUT/features/ (default: the encoder's "
                                            "last path component)")) -> None:
    """Encode every frame once with a frozen vision encoder: OUT/features/<key>/, shards aligned with data/."""
    from .features import run_features

    try:
        res = run_features(output, encoder, tokens=tokens, batch_size=batch_size, dtype=dtype, executor=executor,
                           num_gpus=num_gpus, num_cpus=num_cpus, key=key)
        _disconnect_ray()
    except (VlaflowError, OSError) as err:
        _fail(err)
    led, m = res.ledger, res.manifest
    tok = f", {m['tokens']} tokens" if m["tokens"] else ""
    console.print(f"features → {res.path}: {m['totals']['shards']} shard(s), {m['totals']['rows']} rows, "
                  f"D={m['dim']}{tok}, "
                  f"{m['dtype']}, {m['totals']['bytes'] / 1e6:.2f} MB; frames {led['frames_in']} in = "
                  f"{led['encoded']} encoded + {led['deduplicated']} deduplicated + {led['failed']} failed; "
                  f"{res.shards_skipped} of {res.shards_total} shard(s) already done; {res.seconds:.1f} s"
                  + (f" on {res.where}" if res.shards_skipped < res.shards_total else ""))
    for code, n in led["by_reason"].items():
        console.print(f"[yellow]failed[/] {n} × {code} (see {res.path}/quarantine.jsonl)")
    if not led["balanced"]:
        console.print("[bold red]features ledger does not balance[/]")
        raise typer.Exit(1)


@app.command(context_settings={"allow_extra_args": False})
def train(output: str = typer.Argument(..., help="run storage folder (RunConfig.storage_path); a run lives in "
                                       "OUTPUT/NAME/checkpoint_*"),
          config: str = typer.Option(..., "--config", help="config YAML: its `train:` section (or the whole file)"),
          overrides: list[str] = typer.Argument(None, help="KEY=VALUE overrides of the train section, e.g. steps=20 "
                                                "data.mixture=unified"),
          name: str | None = typer.Option(None, help="run name (RunConfig.name); the same OUTPUT and name resume"),
          num_cpus: int | None = typer.Option(None, help="CPUs for a local Ray instance")) -> None:
    """Train the reference VLA on Ray Train (TorchTrainer); a rerun with the same OUTPUT and name resumes."""
    from .train import apply_overrides, load_config_file, run_training, train_config_from_dict

    try:
        doc = apply_overrides(load_config_file(config, "train"), overrides or [])
        doc["output"] = output
        if name:
            doc["name"] = name
        cfg = train_config_from_dict(doc)
        res = run_training(cfg, num_cpus=num_cpus)
        _disconnect_ray()
    except (VlaflowError, OSError, ValueError) as err:
        _fail(err)
    m = res.metrics
    if res.already_done:
        console.print(f"{cfg.name}: already at step {res.resumed_from} (steps={cfg.steps}); nothing to train — raise "
                      "steps to continue, or pass --name for a new run")
        print(res.checkpoint)
        return
    fams = ", ".join(f"{k[5:]} {v:.4f}" for k, v in sorted(m.items()) if k.startswith("loss/") and k != "loss/flow")
    console.print(f"trained {cfg.name}: step {m.get('step')} (resumed at {res.resumed_from}), loss "
                  f"{m.get('first_loss', float('nan')):.4f} → {m.get('loss', float('nan')):.4f}"
                  + (f" ({fams})" if fams else "")
                  + f"; {m.get('samples_per_s', 0):.1f} samples/s, data wait {100 * m.get('data_wait_fraction', 0):.1f}%"
                  f"; {res.seconds:.1f} s")
    print(res.checkpoint)


@app.command()
def predict(checkpoint: str = typer.Argument(..., help="a checkpoint folder, or a run folder (its latest checkpoint)"),
            episode: str = typer.Option(..., help="episode id in the corpus (see meta/episodes.parquet)"),
            step: int = typer.Option(0, help="step of the episode to predict from"),
            corpus: str | None = typer.Option(None, help="corpus root or YAML (default: the one training read)"),
            seed: int = typer.Option(0, help="noise seed of the flow sampler"),
            as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of a table")) -> None:
    """Predict an action chunk for one recorded step and print it beside the recorded actions, in units."""
    import json

    from .train import predict_step

    try:
        res = predict_step(checkpoint, episode, step, corpus=corpus, seed=seed)
    except (VlaflowError, OSError, ValueError) as err:
        _fail(err)
    if as_json:
        print(json.dumps(res, sort_keys=True))
        return
    t = Table(title=f"{episode} step {step}: predicted vs recorded ({res['embodiment']})")
    for c in ("slot", "unit", "k", "predicted", "recorded"):
        t.add_column(c, justify="left" if c in ("slot", "unit") else "right")
    for slot, rows in res["predicted"].items():
        rec = res["recorded"].get(slot)
        for k, row in enumerate(rows):
            r = rec[k] if rec is not None else None
            t.add_row(slot if k == 0 else "", res["units"].get(slot, "") if k == 0 else "", str(k),
                      " ".join(f"{v:+.4f}" for v in row),
                      " ".join(f"{v:+.4f}" for v in r) if r is not None and None not in r else "—")
    Console(width=max(120, Console().width)).print(t)
    console.print(f"checkpoint {res['checkpoint']} (step {res['train_step']}); mean |error| over recorded values "
                  f"{res['mean_abs_error']:.4f}")


@app.command("tiny-encoder")
def tiny_encoder(output: str = typer.Argument(..., help="folder to write the model into")) -> None:
    """Write a tiny random SigLIP vision encoder (offline) for `vlaflow features --encoder DIR` on sample data."""
    from vlaflow.models.tiny_encoders import save_tiny_siglip

    try:
        print(save_tiny_siglip(output))
    except OSError as err:
        _fail(err)


@app.command()
def publish(output: str = typer.Argument(..., help="a corpus root (folder or URI)"),
            repo_id: str = typer.Option(..., "--repo-id", help="the Hub dataset repo, ORG/NAME"),
            private: bool = typer.Option(False, help="create the repo private (an existing repo keeps its setting)"),
            revision: str | None = typer.Option(None, help="branch to commit to (created when missing; default main)"),
            with_features: bool = typer.Option(False, help="also publish the finished features/<key>/ folders"),
            dry_run: str | None = typer.Option(None, "--dry-run", help="write the planned commits, the card and the "
                                               "file layout to this folder instead (no network)")) -> None:
    """Publish a corpus to a Hugging Face dataset repo with a generated card (token: HF_TOKEN or `hf auth login`).

    Resumable: files already on the Hub with the same sha256 are skipped; a failed run resumes on rerun."""
    from .publish import publish as run_publish

    logging.getLogger("vlaflow.publish").setLevel(logging.INFO)
    try:
        with Progress(TextColumn("[bold]publish"), BarColumn(), TextColumn("{task.completed}/{task.total} commits"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("publish", total=None)
            res = run_publish(output, repo_id, private=private, revision=revision, with_features=with_features,
                              dry_run=dry_run, on_commit=lambda done, total: bar.update(task, completed=done,
                                                                                          total=total))
    except (VlaflowError, OSError) as err:
        _fail(err)
    if res.dry_run:
        console.print(f"dry run → {res.dry_run}: {res.files} file(s), {res.bytes / 1e6:.1f} MB in "
                      f"{len(res.commits)} commit(s); card README.md, plan publish-plan.json "
                      "(`datasets.load_dataset(DIR)` loads it)")
        return
    where = f"https://huggingface.co/datasets/{res.repo_id}" + (f"/tree/{res.revision}" if res.revision != "main" else "")
    console.print(f"published → {where}: {res.uploaded_files} file(s), {res.uploaded_bytes / 1e6:.1f} MB in "
                  f"{len(res.commits)} commit(s); {res.skipped_files} of {res.files} already there; {res.seconds:.1f} s")
    if res.retries:
        console.print("retried: " + ", ".join(f"{n} × {k}" for k, n in sorted(res.retries.items())))
    if res.remote_only:
        console.print(f"[yellow]note:[/] {res.remote_only} file(s) on the Hub are not in this corpus (left in place)")
    if res.left:
        console.print(f"[yellow]{res.left} file(s) left[/]: this run reached the commit budget; rerun within the "
                      "hour's commit limit to continue")
        raise typer.Exit(1)


export_app = typer.Typer(no_args_is_help=True, help="Write one dataset of a corpus in another project's format.")
app.add_typer(export_app, name="export")


@export_app.command("lerobot")
def export_lerobot(output: str = typer.Argument(..., help="a corpus root (folder or URI) or a corpus YAML"),
                   dataset: str = typer.Option(..., help="the dataset to export (one embodiment)"),
                   to: str = typer.Option(..., help="folder to write the LeRobot v3.0 dataset into"),
                   video: bool = typer.Option(False, "--video/--images", help="cameras as MP4 (H.264) videos, or "
                                              "as image bytes in the parquet (default; stored bytes kept as they are)"),
                   gop: int = typer.Option(2, help="--video: keyframe interval in frames (LeRobot's default is 2)"),
                   overwrite: bool = typer.Option(False, help="replace an existing LeRobot dataset at --to")) -> None:
    """A dataset as LeRobot v3.0 (meta/info.json, stats.json, tasks, episodes, data, videos): loads in
    lerobot's LeRobotDataset(repo_id, root=DIR), converts back with `--converter lerobot`."""
    from .export_lerobot import export_lerobot as run

    try:
        res = run(output, dataset, to, mode="video" if video else "images", overwrite=overwrite, gop=gop)
    except (VlaflowError, OSError) as err:
        _fail(err)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    cams = ", ".join(f"{k} ({v})" for k, v in res.cameras.items()) or "none"
    console.print(f"LeRobot v3.0 → {res.path}: {res.episodes} episodes, {res.frames} frames, {res.tasks} task(s); "
                  f"action {len(res.action_names)} values, state {len(res.state_names)}; cameras {cams}")


@app.command()
def report(output: str = typer.Argument(..., help="a corpus root (folder or URI) or a corpus YAML"),
           to: str = typer.Option(..., help="folder to write index.html and its PNGs into"),
           episodes: int = typer.Option(2, help="episodes sampled per dataset"),
           frames: int = typer.Option(6, help="frames per camera strip"),
           seed: int = typer.Option(0, help="sampling seed")) -> None:
    """A static HTML page to look at a corpus: counts, ledger, quarantine reasons, slot distributions from
    stats.json, and a PNG per sampled episode (frames, instruction, slots over time, paths, 2D tracks)."""
    from .report import build_report

    try:
        res = build_report(output, to, per_dataset=episodes, seed=seed, n_frames=frames)
    except (VlaflowError, OSError) as err:
        _fail(err)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"report → {res.path}: {len(res.episodes)} episode PNG(s), {len(res.histograms)} distribution "
                  "PNG(s)")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
