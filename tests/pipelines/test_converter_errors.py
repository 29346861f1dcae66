"""An exception a converter never named sinks only its episode (or what its work unit had left): quarantined as
`converter_error` with the exception's type and message; the run finishes with a manifest and a balanced ledger."""
from __future__ import annotations

import json

import pytest

import vlaflow.pipelines.ingest as ingest_mod
from vlaflow.converters.openx_rlds import OpenXRLDSConverter
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.validate import validate_output


class _Crashes(OpenXRLDSConverter):
    """Open-X, except that reading the 3rd episode of the first train file raises a plain ValueError, and the
    4th episode of a val file comes out with its raw action as text, which the episode checks cannot even read."""

    def read(self, unit):
        for i, item in enumerate(super().read(unit)):
            if unit.split == "train" and unit.file_index == 0 and i == 2:
                raise ValueError("could not convert string to float: 'left'")
            if unit.split == "val" and unit.file_index == 0 and i == 3:
                item.action_raw = "0.1,0.2,left"
            yield item


@pytest.fixture
def crashing(monkeypatch):
    monkeypatch.setattr(ingest_mod, "load_converter", lambda name: _Crashes)


def test_an_unnamed_exception_sinks_only_what_it_touched(tmp_path, crashing):
    src = write_sample_dataset(tmp_path / "src", episodes=8, steps=4, shards=2)
    res = run_ingest(IngestConfig("crashes", str(src), str(tmp_path / "out"), executor="local"))
    led = res.ledger
    assert led["balanced"] and led["by_reason"] == {"converter_error": 2}
    q = [json.loads(line) for line in (tmp_path / "out/meta/quarantine.jsonl").read_text().splitlines()]
    unit = next(r for r in q if "ValueError" in r["reason"])
    assert unit["code"] == "converter_error" and "could not convert string to float: 'left'" in unit["reason"]
    assert unit["episode_key"].endswith("#2..end") and "\n" not in unit["reason"]  # the rest of that file's unit
    bad = next(r for r in q if r is not unit)
    assert bad["episode_key"].startswith("bridge_dataset/val/") and bad["code"] == "converter_error"
    # train file 0 had 4 episodes: 2 kept, the rest of the unit is one entry; val lost one episode
    assert led["episodes_out"] == 16 - 2 - 1 and led["episodes_in"] == led["episodes_out"] + 2
    assert "AttributeError" in bad["reason"]
    assert validate_output(str(tmp_path / "out"))[0] == []


class _CannotOpen(OpenXRLDSConverter):
    def __init__(self, input_path, options=None):
        raise KeyError("featuresDict")


def test_a_converter_that_cannot_open_its_input_is_one_line_exit_2(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vlaflow.pipelines.cli import app

    monkeypatch.setattr(ingest_mod, "load_converter", lambda name: _CannotOpen)
    ingest_mod._CONVERTERS.clear()
    src = write_sample_dataset(tmp_path / "src", episodes=2, steps=3, shards=1)
    res = CliRunner().invoke(app, ["ingest", "--converter", "x", "--input", str(src), "--output",
                                   str(tmp_path / "out"), "--executor", "local"])
    assert res.exit_code == 2
    assert "converter x cannot open" in res.output and "KeyError" in res.output and "Traceback" not in res.output
