"""``vlaflow report``: one output of each task family in one root (manipulation: a LeRobot dataset and the
Bridge-like sample; egocentric: EgoDex with 2D tracks; trajectory: a video with point tracks; navigation:
StreamVLN frames, and real R2R with poses when ../shared is there), plus a quarantined episode. The PNGs must be
valid images, every link of the page must resolve, and the numbers on the page must be the corpus's."""
from __future__ import annotations

import io
import json
import os
import shutil
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlaflow.converters import ConverterOptions
from vlaflow.converters.ego.egodex_synth import write_egodex_episode
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.media import ClipEncoder
from vlaflow.pipelines.cli import app
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.report import build_report, quantile_histogram
from vlaflow.pipelines.stats import run_stats
from vlaflow.tokenization.statistics.spec import StatsSpec

REPO = Path(__file__).resolve().parents[2]
SO100 = REPO / "tests/fixtures/lerobot/so100_images"
SHARED = Path(os.environ.get("VLAFLOW_SHARED", REPO.parent / "shared"))
R2R = SHARED / "fixtures/vln/r2r_discrete"


def _jpeg(value: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value % 256, (value * 7) % 256, 40)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _vln_frames(root: Path) -> Path:
    """StreamVLN layout: annotations.json + images/<scene>_r2r_<ep>/rgb/NNN.jpg (see tests/converters/vln)."""
    entries = []
    for e in range(2):
        video = f"images/17DRP5sb8fy_r2r_{e + 1:06d}"
        acts = [-1, 1, 1, 2, 1, 3, 1, 1]
        (root / video / "rgb").mkdir(parents=True)
        for t in range(len(acts)):
            (root / video / "rgb" / f"{t:03d}.jpg").write_bytes(_jpeg(10 * t + e))
        entries.append({"id": e + 1, "video": video, "instructions": [f"Walk ahead and turn left ({e})."],
                        "actions": acts})
    (root / "annotations.json").write_text(json.dumps(entries))
    return root


def _video_tracks(root: Path) -> Path:
    root.mkdir(parents=True)
    enc = ClipEncoder(Fraction(30), "h264", gop=15)
    for i in range(30):
        enc.add(np.full((96, 128, 3), (i * 7) % 250, np.uint8))
    (root / "clip.mp4").write_bytes(enc.finish())
    track = [[20 + 3 * i, 30 + 2 * i] for i in range(30)]
    (root / "clip.json").write_text(json.dumps({"instruction": "push the cup", "space": "pixel",
                                                "points": {"cup": track}}))
    return root


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    if not (SO100 / "meta/info.json").is_file():
        pytest.skip("LeRobot fixture missing (scripts/make_lerobot_fixtures.py)")
    tmp = tmp_path_factory.mktemp("report")
    root = tmp / "corpus"
    bad = tmp / "so100_bad"
    shutil.copytree(SO100, bad)
    path = next((bad / "meta/episodes").glob("*/*.parquet"))
    t = pq.read_table(path)
    rows = t.to_pylist()
    rows[1]["length"] += 1
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), path)
    run_ingest(IngestConfig("lerobot", str(bad), str(root), executor="local"))
    bridge = write_sample_dataset(tmp / "bridge", episodes=2, steps=6, shards=1, seed=0)
    run_ingest(IngestConfig("openx_rlds", str(bridge), str(root), executor="local"))
    ego = tmp / "ego"
    for i in range(2):
        write_egodex_episode(ego / "part1" / "fold_towel", i, n_frames=12, width=64, height=48, seed=i)
    run_ingest(IngestConfig("egodex", str(ego), str(root), executor="local"))
    run_ingest(IngestConfig("video_trajectory", str(_video_tracks(tmp / "vt")), str(root), executor="local"))
    run_ingest(IngestConfig("vln_frames", str(_vln_frames(tmp / "vln")), str(root),
                            ConverterOptions(extra={"storage": "mp4"}), executor="local"))
    if (R2R / "R2R_val_seen.json").exists():
        run_ingest(IngestConfig("r2r", str(R2R), str(root), executor="local"))
    run_stats(str(root), StatsSpec(), executor="local")
    return tmp, root


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def test_report_of_every_family(families):
    tmp, root = families
    res = build_report(str(root), str(tmp / "rep"), per_dataset=1)
    assert res.warnings == []
    page = (tmp / "rep/index.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert parser.links and all((tmp / "rep" / link).is_file() for link in parser.links)
    pngs = res.episodes + res.histograms
    assert set(pngs) <= set(parser.links)
    for rel in pngs:
        with Image.open(tmp / "rep" / rel) as im:
            im.verify()
        with Image.open(tmp / "rep" / rel) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > (200 if rel in res.episodes else 100)
            assert np.asarray(im.convert("L")).std() > 5  # something is drawn
    assert len(res.episodes) == len({p.split("/")[1] for p in res.episodes}) >= 5  # one per dataset
    for fam in ("manipulation", "egocentric", "trajectory", "navigation"):
        assert f"<td>{fam}</td>" in page
    # the ledger and the quarantine reason of the bad episode
    assert "<td>episode_length_mismatch</td>" in page and "metadata says 7 frames" in page
    led = json.loads((root / "meta/ledger.json").read_text())
    assert (f"<td>episodes</td><td>{led['episodes_in']}</td><td>{led['episodes_out']}</td>"
            f"<td>{led['episodes_quarantined']}</td>") in page and led["episodes_quarantined"] >= 1
    assert any("action.png" in h for h in res.histograms)


def test_cli_report_and_errors(families, tmp_path):
    _, root = families
    r = CliRunner().invoke(app, ["report", str(root), "--to", str(tmp_path / "r"), "--episodes", "0"])
    assert r.exit_code == 0, r.output
    assert "0 episode PNG(s)" in r.output and (tmp_path / "r/index.html").is_file()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nothing"), "--to", str(tmp_path / "r2")])
    assert r.exit_code == 2 and "not a vlaflow ingest output" in r.output


def test_quantile_histogram_holds_the_mass_between_quantiles():
    st = {"min": [0.0], "q01": [1.0], "q10": [2.0], "q50": [4.0], "q90": [6.0], "q99": [9.0], "max": [10.0]}
    edges, dens = quantile_histogram(st, 0)
    assert list(edges) == [0, 1, 2, 4, 6, 9, 10]
    np.testing.assert_allclose(dens * np.diff(edges), [0.01, 0.09, 0.40, 0.40, 0.09, 0.01])
    assert quantile_histogram({**st, "max": [0.0], "min": [0.0], "q01": [0.0], "q10": [0.0], "q50": [0.0],
                               "q90": [0.0], "q99": [0.0]}, 0) is None
