"""Mixture presets over the datasets vlaflow supports, and the seeded sampler."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from vlaflow.schemas import InputError
from vlaflow.tokenization.sampling.mixtures import (OXE_MAGIC_SOUP, PRESETS, Mixture, MixtureSampler, catalog_datasets,
                                                    get_mixture)

REPO = Path(__file__).resolve().parents[2]


def openx_datasets() -> dict[str, dict]:
    """Every Open-X dataset with a built-in spec, with its task family."""
    out = {}
    for p in sorted((REPO / "converters/openx_rlds/specs").glob("*.yaml")):
        spec = yaml.safe_load(p.read_text())
        out[spec["dataset"]] = {"task_family": spec.get("task_family", "manipulation"), "rows": 1000}
    return out


def test_magic_soup_covers_the_supported_open_x_manipulation_datasets():
    ds = openx_datasets()
    assert set(OXE_MAGIC_SOUP) <= set(ds)
    manip = {n for n, d in ds.items() if d["task_family"] == "manipulation"}
    # fmb, dobbe and droid join in the _plus preset, as in OpenVLA; the Open-X bucket's outdated copy of Bridge
    # ("bridge") is in neither: both stacks train on BridgeData V2 (bridge_dataset)
    assert manip - set(OXE_MAGIC_SOUP) == {"fmb", "dobbe", "droid", "bridge"}
    assert len(OXE_MAGIC_SOUP) == 25
    p = get_mixture("oxe_magic_soup").resolve(ds)
    assert set(p) == set(OXE_MAGIC_SOUP) and abs(sum(p.values()) - 1) < 1e-12
    assert p["taco_play"] / p["bridge_dataset"] == pytest.approx(2.0)
    assert p["language_table"] / p["bridge_dataset"] == pytest.approx(0.1)
    plus = get_mixture("oxe_magic_soup_plus").resolve(ds)
    assert plus["droid"] / plus["bridge_dataset"] == pytest.approx(0.06)
    assert plus["nyu_franka_play_dataset_converted_externally_to_rlds"] / plus["bridge_dataset"] == pytest.approx(3.0)
    assert len(plus) == 28
    assert "berkeley_gnm_recon" in get_mixture("oxe_flex").resolve(ds)
    with pytest.raises(InputError, match="presets: oxe_flex, oxe_magic_soup"):
        get_mixture("soup")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("preset", ["oxe_magic_soup", "unified"])
def test_sampler_follows_the_weights_within_2_percent(preset, seed):
    ds = openx_datasets() | {"r2r": {"task_family": "navigation", "rows": 50},
                             "libero_10": {"task_family": "manipulation", "rows": 10},
                             "epic_kitchens": {"task_family": "egocentric", "rows": 10}}
    probs = get_mixture(preset).resolve(ds)
    draws = Counter(MixtureSampler(probs, seed=seed).sample(10_000))
    for name, p in probs.items():
        assert abs(draws[name] / 10_000 - p) <= 0.02, (name, draws[name], p)
    assert set(draws) <= set(probs)
    assert MixtureSampler(probs, seed=seed).sample(500) == MixtureSampler(probs, seed=seed).sample(500)
    assert MixtureSampler(probs, seed=seed).sample(500) != MixtureSampler(probs, seed=seed + 10).sample(500)


def test_unified_preset_splits_by_task_family():
    ds = openx_datasets() | {"r2r": {"task_family": "navigation", "rows": 5},
                             "rxr": {"task_family": "navigation", "rows": 5},
                             "libero_10": {"task_family": "manipulation", "rows": 5}}
    p = get_mixture("unified").resolve(ds)
    nav = sum(v for n, v in p.items() if ds[n]["task_family"] == "navigation")
    man = sum(v for n, v in p.items() if ds[n]["task_family"] == "manipulation")
    assert nav == pytest.approx(0.25 / 0.85) and man == pytest.approx(0.6 / 0.85)  # no ego/trajectory data here
    assert p["r2r"] == pytest.approx(p["rxr"])  # unnamed datasets: default weight inside their family
    assert p["libero_10"] / p["bridge_dataset"] == pytest.approx(1.0)
    assert p["berkeley_gnm_recon"] > 0  # Open-X navigation joins the navigation share


def test_balance_by_size_and_the_real_catalog(bridge_ingest):
    out, _ = bridge_ingest
    manifest = json.loads((Path(out) / "meta/manifest.json").read_text())
    ds = catalog_datasets(manifest)
    assert set(ds) == {"bridge_dataset"}
    bridge = ds["bridge_dataset"]
    assert bridge == {**manifest["datasets"]["bridge_dataset"], "rows": 500, "episodes": 50}
    assert bridge["task_family"] == "manipulation" and bridge["embodiment"] == "widowx_250"
    assert get_mixture("oxe_magic_soup").resolve(ds) == {"bridge_dataset": 1.0}
    both = ds | {"kuka": {"task_family": "manipulation", "rows": 1500}}
    bal = get_mixture("oxe_magic_soup").resolve(both, balance=True)
    assert bal["kuka"] / bal["bridge_dataset"] == pytest.approx(0.8341046294 * 3)
    with pytest.raises(InputError, match="selects none of the corpus' datasets: bridge_dataset$"):
        Mixture("x", {"toto": 1.0}).resolve(ds)
    with pytest.raises(InputError, match="needs the size"):
        get_mixture("uniform").resolve({"a": {"task_family": "navigation"}}, balance=True)
    assert set(PRESETS) >= {"oxe_magic_soup", "unified", "uniform"}


def test_user_weights_from_a_corpus_replace_the_preset_and_must_name_its_datasets(bridge_ingest):
    """Two catalogs' datasets in one corpus (the real Bridge entry and a navigation one); the corpus YAML's
    weights override the preset per dataset."""
    out, _ = bridge_ingest
    catalog = catalog_datasets(json.loads((Path(out) / "meta/manifest.json").read_text()))
    catalog["r2r"] = {"task_family": "navigation", "embodiment": "vln_agent", "rows": 200, "episodes": 20}
    p = get_mixture("uniform").resolve(catalog, weights={"bridge_dataset": 3.0})
    assert p == pytest.approx({"bridge_dataset": 0.75, "r2r": 0.25})
    assert get_mixture("uniform").resolve(catalog, weights={"r2r": 0}) == {"bridge_dataset": 1.0}
    # oxe_magic_soup has no weight for r2r: the user's weight adds it
    assert get_mixture("oxe_magic_soup").resolve(catalog, weights={"r2r": 1.0}) == pytest.approx(
        {"bridge_dataset": 0.5, "r2r": 0.5})
    # family preset: the user's weight moves shares inside a family, never across families
    fam = get_mixture("unified").resolve(catalog | {"kuka": {"task_family": "manipulation", "rows": 1}},
                                         weights={"kuka": 2.0})
    assert fam["kuka"] / fam["bridge_dataset"] == pytest.approx(2.0)
    assert fam["r2r"] == pytest.approx(0.25 / 0.85)
    with pytest.raises(InputError) as err:
        get_mixture("uniform").resolve(catalog, weights={"bridge": 1.0, "r2r": 1.0})
    assert str(err.value) == "mixture weights name dataset(s) bridge not in the corpus; it has: bridge_dataset, r2r"
    for bad in (-1.0, float("nan"), "2"):
        with pytest.raises(InputError, match="finite number"):
            get_mixture("uniform").resolve(catalog, weights={"r2r": bad})
    broken = {"datasets": {}, "shards": [{"path": "data/x/train/chunk-000/shard-00000.parquet", "dataset": "x",
                                          "rows": 1, "episodes": 1}]}
    with pytest.raises(InputError, match="catalog lacks"):
        catalog_datasets(broken)
