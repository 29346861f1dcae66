"""``vlaflow report OUT --to DIR``: look at what was converted before spending GPU hours on it.

One static folder, no server: ``index.html`` with the catalog counts (per dataset, embodiment, task family), the
ledger and the quarantine reasons, per-slot distributions drawn from ``meta/stats.json``, and one PNG per sampled
episode (``episodes/``):

- a frame strip per camera, the instruction above it; for rows with trajectory targets (egocentric) the
  future 2D track of each ``*_uv`` slot drawn on the frame it starts from;
- the action and state values over time, one colour per slot, with spans shaded where a slot is masked out
  (grey) or the action is invalid (red);
- a top-down path (``base.pose`` x, y) for navigation episodes.

The distributions are histograms with the quantiles as bin edges (min, q01, q10, q50, q90, q99, max): each bin
holds the probability mass between its two quantiles, so the bars are the data's own density at that resolution,
without re-reading any shard.
"""
from __future__ import annotations

import html
import json
import posixpath
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlaflow.schemas import ACTION, STATE, TRAJECTORY, Col, EpCol, InputError
from vlaflow.schemas.names import safe_component

from .corpus import Corpus
from .layout import LEDGER, QUARANTINE, STATS

QUANTILE_EDGES = (("min", 0.0), ("q01", 0.01), ("q10", 0.10), ("q50", 0.50), ("q90", 0.90), ("q99", 0.99),
                  ("max", 1.0))
EXAMPLES_PER_REASON = 3  # quarantined episodes listed per (dataset, reason)
MAX_LINES = 24  # values drawn per plot (the rest are listed in the legend only by slot)


@dataclass
class ReportResult:
    path: str  # index.html
    episodes: list[str] = field(default_factory=list)  # PNGs, relative to the report folder
    histograms: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------- episodes
def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous [start, stop) runs of True."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    return out


def _matrix(t: pa.Table, col: str, width: int) -> np.ndarray:
    flat = pc.list_flatten(t[col].combine_chunks()).to_numpy(zero_copy_only=False)
    return np.asarray(flat).reshape(t.num_rows, width)


def _plot_slots(ax, layout, values: np.ndarray, mask: np.ndarray, secs: np.ndarray, title: str,
                invalid: np.ndarray | None = None) -> None:
    plt = _plt()
    used = [s for s in layout.slots if mask[:, slice(*layout.range(s.name))].any()]
    colors = plt.get_cmap("tab10")
    drawn = 0
    for k, s in enumerate(used):
        a, b = layout.range(s.name)
        cols = [i for i in range(a, b) if mask[:, i].any()]
        for j, i in enumerate(cols):
            if drawn >= MAX_LINES:
                break
            y = np.where(mask[:, i], values[:, i], np.nan)
            ax.plot(secs, y, color=colors(k % 10), lw=1.2, alpha=1.0 - 0.5 * j / max(len(cols), 1),
                    label=s.name if j == 0 else None)
            drawn += 1
        present = mask[:, a:b].any(axis=1)
        for r0, r1 in _runs(~present):  # the slot is real elsewhere in the episode, not here
            ax.axvspan(secs[r0], secs[min(r1, len(secs) - 1)], color="0.6", alpha=0.25, lw=0)
    if invalid is not None:
        for r0, r1 in _runs(invalid):
            ax.axvspan(secs[r0] - 0.5 * _dt(secs), secs[min(r1, len(secs)) - 1] + 0.5 * _dt(secs), color="red",
                       alpha=0.15, lw=0, label="action invalid" if r0 == _runs(invalid)[0][0] else None)
    ax.set_title(title + ("" if used else " (no slot filled: raw only)"), fontsize=9, loc="left")
    ax.set_xlabel("time (s)", fontsize=8)
    ax.tick_params(labelsize=7)
    if used or invalid is not None and invalid.any():
        ax.legend(fontsize=6, loc="upper right", ncol=2, framealpha=0.6)


def _dt(secs: np.ndarray) -> float:
    return float(np.median(np.diff(secs))) if len(secs) > 1 else 1.0


def _uv_tracks(traj: np.ndarray | None, tmask: np.ndarray | None, row: int) -> list[tuple[str, np.ndarray]]:
    """(slot, [K, 2] uv) future tracks of row ``row``, each ``*_uv`` slot's first point."""
    if traj is None or tmask is None:
        return []
    out = []
    for s in TRAJECTORY.slots:
        if not s.name.endswith("_uv") and s.name != "points.uv":
            continue
        a, _ = TRAJECTORY.range(s.name)
        ok = tmask[row, :, a] & tmask[row, :, a + 1]
        if ok.any():
            out.append((s.name, traj[row, ok, a:a + 2]))
    return out


def _top_down(state, smask, action, amask):
    """(x, y, how) of a navigation episode: ``base.pose`` where the rows have it, else dead reckoning from the
    discrete ``nav.command`` steps (forward metres, turn radians); None when neither is filled."""
    a, _ = STATE.range("base.pose")
    ok = smask[:, a] & smask[:, a + 1]
    if ok.sum() >= 1:
        return state[ok, a], state[ok, a + 1], "base.pose x, y"
    c, _ = ACTION.range("nav.command")
    rows = amask[:, c] & amask[:, c + 1]
    if not rows.any():
        return None
    x, y, yaw = [0.0], [0.0], 0.0
    for fwd, turn in action[rows, c:c + 2]:
        yaw += float(turn)
        x.append(x[-1] + float(fwd) * np.cos(yaw))
        y.append(y[-1] + float(fwd) * np.sin(yaw))
    return np.asarray(x), np.asarray(y), "dead reckoning from nav.command"


def render_episode(corpus: Corpus, readers: dict, eid: str, info: dict, path: Path, n_frames: int = 6) -> None:
    """One PNG for one episode: frame strips, slot plots, and a top-down path or 2D tracks where the rows have them."""
    plt = _plt()
    cols = [Col.EPISODE_ID, Col.TIMESTAMP_NS, Col.INSTRUCTION, Col.ACTION, Col.ACTION_MASK, Col.ACTION_VALID, Col.STATE,
            Col.STATE_MASK, Col.IMAGES, Col.VIDEOS, Col.TRAJECTORY, Col.TRAJECTORY_MASK]
    t = corpus.read_episode(eid, columns=cols)
    n = t.num_rows
    secs = (np.asarray(t[Col.TIMESTAMP_NS].to_numpy()) - int(t[Col.TIMESTAMP_NS][0].as_py())) / 1e9
    action, amask = _matrix(t, Col.ACTION, ACTION.width), _matrix(t, Col.ACTION_MASK, ACTION.width).astype(bool)
    state, smask = _matrix(t, Col.STATE, STATE.width), _matrix(t, Col.STATE_MASK, STATE.width).astype(bool)
    valid = np.asarray(t[Col.ACTION_VALID].to_numpy(zero_copy_only=False), bool)
    traj = tmask = None
    if t[Col.TRAJECTORY].null_count < n:
        shape = (n, -1, TRAJECTORY.width)
        traj = np.nan_to_num(np.asarray(pc.list_flatten(pc.list_flatten(t[Col.TRAJECTORY].combine_chunks()))
                                        .to_numpy(zero_copy_only=False), np.float64)).reshape(shape)
        tmask = np.asarray(pc.list_flatten(pc.list_flatten(t[Col.TRAJECTORY_MASK].combine_chunks()))
                           .to_numpy(zero_copy_only=False), bool).reshape(shape)
    cams = [r for r in info.get("cameras", {}) if not r.startswith("depth")]
    picks = sorted(set(np.linspace(0, n - 1, min(n, n_frames)).round().astype(int).tolist()))
    path_xy = _top_down(state, smask, action, amask) if info.get("task_family") == "navigation" else None
    nav = path_xy is not None
    plots = 2 + int(bool(nav))
    fig = plt.figure(figsize=(2.2 * max(len(picks), 4), 1.9 * len(cams) + 2.4 * plots + 0.8))
    grid = fig.add_gridspec(len(cams) + plots, max(len(picks), 1), height_ratios=[1.0] * len(cams) + [1.3] * plots)
    instr = t[Col.INSTRUCTION].cast(pa.string())
    text = str(instr[0].as_py() or "")
    changes = len(set(instr.to_pylist())) > 1
    fig.suptitle(f"{info['name']} · {eid} · {info['embodiment']} · {n} steps\n"
                 + "\n".join(textwrap.wrap(("“" + text + "”" if text else "(no instruction)")
                                           + (" (changes within the episode)" if changes else ""), 110)[:2]),
                 fontsize=9, x=0.01, ha="left")
    images = t[Col.IMAGES].combine_chunks()
    videos = t[Col.VIDEOS].combine_chunks()
    root = corpus.root_of(info["name"])
    if root.uri not in readers:
        from vlaflow.media import FrameReader

        readers[root.uri] = FrameReader(root.uri)
    for ci, role in enumerate(cams):
        icells = images.field(role).to_pylist() if role in images.type.names else [None] * n
        vcells = videos.field(role).to_pylist() if role in videos.type.names else [None] * n
        for j, row in enumerate(picks):
            ax = fig.add_subplot(grid[ci, j])
            ax.set_xticks([])
            ax.set_yticks([])
            try:
                rgb = readers[root.uri].frame(icells[row], vcells[row])
            except (ValueError, OSError) as err:
                ax.text(0.5, 0.5, f"no frame\n{str(err)[:40]}", ha="center", va="center", fontsize=6)
                continue
            ax.imshow(rgb)
            h, w = rgb.shape[:2]
            for k, (slot, uv) in enumerate(_uv_tracks(traj, tmask, row)):
                ax.plot(uv[:, 0] * w, uv[:, 1] * h, "-o", ms=1.5, lw=1.0, color=f"C{k}", label=slot)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_title(f"{role} · t={secs[row]:.2f}s", fontsize=7)
            if j == 0 and _uv_tracks(traj, tmask, row):
                ax.legend(fontsize=5, loc="lower left")
    base = len(cams)
    _plot_slots(fig.add_subplot(grid[base, :]), ACTION, action, amask, secs, "action (normalized slots)", ~valid)
    _plot_slots(fig.add_subplot(grid[base + 1, :]), STATE, state, smask, secs, "state (normalized slots)")
    if nav:
        ax = fig.add_subplot(grid[base + 2, :])
        x, y, how = path_xy
        ax.plot(x, y, "-", color="C0", lw=1.5)
        ax.scatter(x[:1], y[:1], color="green", zorder=3, label="start")
        ax.scatter(x[-1:], y[-1:], color="red", zorder=3, label="end")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"top-down path ({how}; m)", fontsize=9, loc="left")
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    # fixed margins: tight_layout measures every tick label and costs ~1 s per figure
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.05, top=1 - 0.9 / fig.get_figheight(), hspace=0.55,
                        wspace=0.08)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- stats
def quantile_histogram(st: dict, i: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(bin edges, density) of value ``i`` of a slot's stats: the mass between consecutive quantiles."""
    edges, mass = [], []
    for key, q in QUANTILE_EDGES:
        v = (st.get(key) or [None] * (i + 1))[i]
        if v is None:
            return None
        edges.append(float(v))
        mass.append(q)
    edges, mass = np.asarray(edges), np.diff(np.asarray(mass))
    width = np.diff(edges)
    keep = width > 0
    if not keep.any():
        return None
    return edges, np.where(keep, mass / np.where(keep, width, 1.0), 0.0)


def render_stats(stats: dict, out: Path) -> list[tuple[str, str, str]]:
    """One PNG per (group, kind): a histogram per filled value of each slot. Returns (group, kind, rel path)."""
    plt = _plt()
    made = []
    for gkey, g in stats.get("groups", {}).items():
        for kind in ("action", "state"):
            slots = g.get(kind) or {}
            panels = [(name, i) for name, st in slots.items() for i in range(int(st.get("width", 0)))
                      if (st.get("count") or [0] * (i + 1))[i]]
            if not panels:
                continue
            panels = panels[:28]
            ncol = min(7, len(panels))
            nrow = (len(panels) + ncol - 1) // ncol
            fig, axes = plt.subplots(nrow, ncol, figsize=(2.0 * ncol, 1.6 * nrow), squeeze=False)
            for ax in axes.flat[len(panels):]:
                ax.axis("off")
            for ax, (name, i) in zip(axes.flat, panels):
                h = quantile_histogram(slots[name], i)
                ax.set_title(f"{name}[{i}]", fontsize=7)
                ax.tick_params(labelsize=6)
                ax.locator_params(axis="x", nbins=3)
                if h is None:
                    ax.text(0.5, 0.5, "constant" if slots[name]["min"][i] is not None else "—", ha="center",
                            va="center", transform=ax.transAxes, fontsize=7)
                    continue
                edges, dens = h
                ax.bar(edges[:-1], dens, width=np.diff(edges), align="edge", color="C0", alpha=0.7, edgecolor="C0")
                ax.axvline(slots[name]["mean"][i], color="C3", lw=0.8)
                ax.set_yticks([])
            fig.suptitle(f"{gkey} · {kind} (quantile-edged histograms; red = mean)", fontsize=8, x=0.01, ha="left")
            fig.subplots_adjust(left=0.03, right=0.99, bottom=0.12 / nrow, top=1 - 0.45 / fig.get_figheight(),
                                hspace=0.7, wspace=0.25)
            rel = posixpath.join("stats", f"{safe_component(gkey)}.{kind}.png")
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out / rel, dpi=80)
            plt.close(fig)
            made.append((gkey, kind, rel))
    return made


# ---------------------------------------------------------------------------------------------- page
def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;font-size:13px;text-align:left}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}h2{border-bottom:1px solid #ddd}.note{color:#666;font-size:13px}"""


def build_report(output: str, to: str, per_dataset: int = 2, seed: int = 0, n_frames: int = 6) -> ReportResult:
    """Write ``index.html`` and its PNGs for the corpus at ``output`` into the folder ``to``."""
    if per_dataset < 0 or n_frames < 1:
        raise InputError("--episodes must be >= 0 and --frames >= 1")
    corpus = Corpus.open(output)
    dest = Path(to)
    dest.mkdir(parents=True, exist_ok=True)
    res = ReportResult(str(dest / "index.html"))
    catalog = corpus.catalog()
    rows, by_emb, by_fam = [], {}, {}
    led_total = {"episodes_in": 0, "episodes_out": 0, "episodes_quarantined": 0, "steps_in": 0, "steps_out": 0,
                 "steps_quarantined": 0}
    reasons: dict[tuple[str, str], int] = {}
    examples: list[list] = []
    for r in corpus.roots:
        led = r.out.read_json(LEDGER) if r.out.exists(LEDGER) else {}
        for k in led_total:
            led_total[k] += int(led.get(k, 0))
        if r.out.exists(QUARANTINE):
            for line in r.out.read_bytes(QUARANTINE).decode("utf-8", "replace").splitlines():
                try:
                    q = json.loads(line)
                except ValueError:
                    continue
                ds = str(q.get("episode_key", "")).split("/", 1)[0]
                if ds not in r.datasets:
                    continue
                key = (ds, str(q.get("code", "?")))
                reasons[key] = reasons.get(key, 0) + 1
                if reasons[key] <= EXAMPLES_PER_REASON:
                    examples.append([q.get("episode_key", ""), key[1], str(q.get("reason", ""))[:160]])
        for name in r.datasets:
            e = r.manifest.ingests[name]
            c = catalog[name]
            q = (e.get("ledger") or {}).get("episodes_quarantined", 0)
            rows.append([name, e["converter"], c["embodiment"], c["task_family"], c["episodes"], c["rows"], q])
            for key, acc in ((c["embodiment"], by_emb), (c["task_family"], by_fam)):
                a = acc.setdefault(key, [0, 0, 0])
                a[0] += 1
                a[1] += c["episodes"]
                a[2] += c["rows"]
    # sampled episodes
    eps = corpus.episodes()
    rng = np.random.default_rng(seed)
    readers: dict = {}
    sections = []
    for name in sorted(catalog):
        mine = eps.filter(pc.equal(eps[EpCol.DATASET].cast(pa.string()), name))[EpCol.EPISODE_ID].to_pylist()
        picks = sorted(rng.choice(len(mine), min(per_dataset, len(mine)), replace=False).tolist()) if mine else []
        for i in picks:
            eid = mine[i]
            rel = posixpath.join("episodes", safe_component(name), safe_component(eid.replace("/", "__")) + ".png")
            try:
                render_episode(corpus, readers, eid, {**catalog[name], "name": name}, dest / rel, n_frames)
            except (ValueError, OSError, KeyError) as err:
                res.warnings.append(f"{eid}: not rendered ({type(err).__name__}: {str(err)[:200]})")
                continue
            res.episodes.append(rel)
            sections.append((name, eid, rel))
    for rd in readers.values():
        rd.close()
    # statistics
    stats_note = ""
    hists = []
    root0 = corpus.roots[0]
    if len(corpus.roots) == 1 and root0.out.exists(STATS):
        hists = render_stats(root0.out.read_json(STATS), dest)
        res.histograms = [h[2] for h in hists]
    else:
        stats_note = (f"No {STATS} in {output}: run <code>vlaflow stats {html.escape(output)}</code> for the "
                      "per-slot distributions.")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>vlaflow report · {html.escape(output)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>vlaflow report</h1><p class='note'>{html.escape(output)} · {len(catalog)} dataset(s)</p>",
             "<h2>Datasets</h2>",
             _table(["dataset", "converter", "embodiment", "family", "episodes", "steps", "quarantined"], rows),
             "<h3>Per embodiment</h3>",
             _table(["embodiment", "datasets", "episodes", "steps"], [[k, *v] for k, v in sorted(by_emb.items())]),
             "<h3>Per task family</h3>",
             _table(["family", "datasets", "episodes", "steps"], [[k, *v] for k, v in sorted(by_fam.items())]),
             "<h2>Ledger</h2>",
             _table(["", "in", "out", "quarantined"],
                    [["episodes", led_total["episodes_in"], led_total["episodes_out"], led_total["episodes_quarantined"]],
                     ["steps", led_total["steps_in"], led_total["steps_out"], led_total["steps_quarantined"]]]),
             "<p class='note'>balanced: " + str(led_total["episodes_in"] == led_total["episodes_out"]
                                                + led_total["episodes_quarantined"]) + "</p>"]
    if reasons:
        parts += ["<h3>Quarantine reasons</h3>",
                  _table(["dataset", "reason", "episodes"], [[d, c, n] for (d, c), n in sorted(reasons.items())]),
                  "<h3>Examples</h3>", _table(["episode", "reason", "detail"], examples)]
    parts.append("<h2>Sampled episodes</h2>")
    for name, eid, rel in sections:
        parts.append(f"<h3>{html.escape(name)} · {html.escape(eid)}</h3>"
                     f"<a href='{html.escape(rel)}'><img src='{html.escape(rel)}' alt='{html.escape(eid)}'></a>")
    parts.append("<h2>Slot distributions (meta/stats.json)</h2>")
    if stats_note:
        parts.append(f"<p class='note'>{stats_note}</p>")
    for gkey, kind, rel in hists:
        parts.append(f"<h3>{html.escape(gkey)} · {kind}</h3><img src='{html.escape(rel)}' alt='{html.escape(gkey)}'>")
    if res.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in res.warnings) + "</ul>")
    parts.append("</body></html>")
    (dest / "index.html").write_text("\n".join(parts), encoding="utf-8")
    return res
