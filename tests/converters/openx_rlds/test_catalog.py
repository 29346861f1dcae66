"""Every Open-X layout in the catalog (converters/openx_rlds/catalog/, the TFDS catalog's own feature
structures) is synthesized with TFDS's serializer and ingested: datasets with a built-in spec come out
standardized in exactly the spec's slots, the others with raw actions, and all validate."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlaflow.converters.openx_rlds import OpenXRLDSConverter, builtin_specs
from vlaflow.converters.openx_rlds.catalog import catalogs, write_catalog_dataset
from vlaflow.pipelines.corpus import Corpus
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import ACTION, STATE

CATALOGS = catalogs()
SPECS = builtin_specs()
OXE_MIX = ("fractal20220817_data", "kuka", "bridge_dataset", "taco_play", "jaco_play", "berkeley_cable_routing",
            "roboturk", "nyu_door_opening_surprising_effectiveness", "viola", "berkeley_autolab_ur5", "toto",
            "language_table", "stanford_hydra_dataset_converted_externally_to_rlds",
            "austin_buds_dataset_converted_externally_to_rlds", "nyu_franka_play_dataset_converted_externally_to_rlds",
            "furniture_bench_dataset_converted_externally_to_rlds", "ucsd_kitchen_dataset_converted_externally_to_rlds",
            "austin_sailor_dataset_converted_externally_to_rlds", "austin_sirius_dataset_converted_externally_to_rlds",
            "bc_z", "dlr_edan_shared_control_converted_externally_to_rlds",
            "iamlab_cmu_pickup_insert_converted_externally_to_rlds", "utaustin_mutex", "berkeley_fanuc_manipulation",
            "cmu_stretch", "fmb", "dobbe", "droid")


def _spec_of(name: str):
    return SPECS.get(name)


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_catalog_layout_converts(name, tmp_path):
    cat = CATALOGS[name]
    root = write_catalog_dataset(cat, tmp_path / "src", episodes=2, steps=5)
    conv = OpenXRLDSConverter(str(root))
    spec = _spec_of(name)
    assert (conv.warnings() == []) == (spec is not None)
    items = [e for u in conv.work_units(1 << 30) for e in conv.read(u)]
    rejected = [e for e in items if not hasattr(e, "raw")]
    assert not rejected, f"rejected: {rejected[0]}"
    ep = items[0]
    info = conv.datasets()[0]
    if spec is not None:
        assert conv.spec.source == spec.source and info.name == spec.dataset
        for m in spec.action:  # every slot the spec names is filled and masked in, nothing else
            a, b = ACTION.range(m.slot)
            assert ep.action_mask[a:b].any(), m.slot
        filled = np.zeros(ACTION.width, bool)
        for m in spec.action:
            a, b = ACTION.range(m.slot)
            filled[a:b] = True
        assert not (ep.action_mask & ~filled).any()
        assert not ep.action[:, ~ep.action_mask].any()
        for m in spec.state:
            a, b = STATE.range(m.slot)
            assert ep.state_mask[a:b].any(), m.slot
        assert set(ep.images) == set(spec.cameras)
        if spec.instruction_keys:
            assert ep.instructions, "the spec's instruction keys gave no text"
    # nothing the source has is lost: each step feature is carried, kept raw, or dropped with a reason
    carried = set(spec.cameras.values() if spec else conv.spec.cameras.values())
    carried |= {k.rsplit("[", 1)[0] for k in info.action_raw_keys + info.state_raw_keys}
    carried |= set(conv.spec.instruction_keys) | {"is_first", "is_last", "is_terminal", "reward", "discount"}
    for leaf in conv.leaves:
        assert leaf.key in carried or leaf.key in info.raw_keys or leaf.key in info.dropped_keys, leaf.key


@pytest.mark.parametrize("name", sorted(n for n in CATALOGS if _spec_of(n) is not None))
def test_catalog_dataset_ingests_and_validates(name, tmp_path):
    root = write_catalog_dataset(CATALOGS[name], tmp_path / "src", episodes=2, steps=4)
    out = tmp_path / "out"
    res = run_ingest(IngestConfig(converter="openx_rlds", input=str(root), output=str(out), executor="local"))
    assert res.ledger["episodes_out"] == 2 and res.ledger["episodes_quarantined"] == 0
    problems, _ = validate_output(str(out))
    assert problems == []
    corpus = Corpus.open(str(out))
    (ds,) = corpus.datasets()
    raw_keys = corpus.catalog()[ds]["raw_keys"]
    if raw_keys:
        eid = corpus.episodes()["episode_id"][0].as_py()
        raw = corpus.read_raw(eid)
        assert raw.num_rows == corpus.read_episode(eid, ["episode_id"]).num_rows
        assert set(raw_keys) <= set(raw.column_names)
        manifest = json.loads((out / "meta" / "manifest.json").read_text())
        assert all(sh["raw"]["columns"] == len(raw_keys) for sh in manifest["shards"])
        assert pq.read_metadata(out / manifest["shards"][0]["raw"]["path"]).num_rows == manifest["shards"][0]["rows"]



def test_storage_folder_and_alias_names_resolve(tmp_path):
    """A builder dir found by its folder name (dataset_info names it otherwise) or by an alias of a spec."""
    cat = CATALOGS["taco_play"]
    root = write_catalog_dataset(cat, tmp_path / "a", episodes=1, steps=3)
    info = json.loads((root / "dataset_info.json").read_text())
    (root / "dataset_info.json").write_text(json.dumps({**info, "name": "my_taco_copy"}))
    conv = OpenXRLDSConverter(str(root))
    assert conv.spec.dataset == "taco_play" and conv.warnings() == []
    alias = next(a for a in SPECS["fractal20220817_data"].aliases)
    cat = CATALOGS["fractal20220817_data"]
    root = write_catalog_dataset(type(cat)(alias, cat.version, cat.source, cat.splits, cat.features_text,
                                           cat.values), tmp_path / "b", episodes=1, steps=3)
    conv = OpenXRLDSConverter(str(root))
    assert conv.spec.dataset == "fractal20220817_data" and conv.datasets()[0].name == "fractal20220817_data"


def test_the_training_mixture_has_specs_and_layouts():
    """OpenVLA's oxe_magic_soup_plus: every dataset resolves to a built-in spec and a catalog layout."""
    missing_spec = [n for n in OXE_MIX if n not in SPECS]
    assert not missing_spec, f"no built-in spec for {missing_spec}"
    missing_layout = [n for n in OXE_MIX
                      if not any(x in CATALOGS for x in (SPECS[n].dataset, *SPECS[n].aliases))]
    assert not missing_layout, f"no catalog layout for {missing_layout}"
    from vlaflow.tokenization.sampling.mixtures import get_mixture

    plus = get_mixture("oxe_magic_soup_plus").weights
    assert {SPECS[n].dataset for n in OXE_MIX} == set(plus)  # the preset names the specs' own dataset names
