"""Named sampling mixtures across a corpus' datasets and a seeded sampler that follows them.

A mixture resolves against the corpus catalog (``datasets`` of ``meta/manifest.json``: name →
DatasetInfo json; ``catalog_datasets`` adds row/episode counts) and, optionally, the user's
per-dataset weights from a corpus YAML, which replace the preset's weight for the datasets they name
and may name only datasets the corpus has.

A ``Mixture`` holds explicit per-dataset weights and, optionally, per-task-family weights:

- explicit weights only (``oxe_magic_soup``): each available listed dataset gets its weight; the
  weights are normalized over the datasets actually present (as Octo/OpenVLA do);
- family weights (``unified``): each family (manipulation, navigation, egocentric, trajectory,
  vision_language) gets
  its share, split inside the family by the explicit weights, or ``default_weight`` for a dataset
  the preset does not name (so a new VLN or simulation dataset joins its family without a code
  change). A family with no dataset present drops out and the rest are renormalized.

``balance=True`` multiplies each weight by the dataset's size (rows, i.e. transitions) before
normalizing, like Octo's ``balance_weights`` — it samples datasets in proportion to size × weight.

Presets (the Open-X weights are those of Octo's/OpenVLA's ``OXE_NAMED_MIXES``, restricted to the
Open-X datasets vlaflow has specs for, ``converters/openx_rlds/specs/``):

- ``oxe_magic_soup``: Octo's 25 datasets (``OXE_MAGIC_SOUP``: fractal20220817_data 0.54087122203, kuka
  0.8341046294, bridge_dataset 1.0, taco_play 2.0, ..., language_table 0.1, nyu_franka_play 3.0);
- ``oxe_magic_soup_plus``: the above + fmb 1.0, dobbe 0.2, droid 0.06 (OpenVLA);
- ``oxe_flex``: the magic soup + berkeley_gnm_recon 1.0 (Octo's ``oxe_flex_act_soup`` has
  gnm_dataset 1.0, of which RECON is one part);
- ``unified``: manipulation 0.6 (the magic soup plus weights inside, 1.0 for others, e.g. simulation
  logs), navigation 0.25, egocentric 0.1, trajectory 0.05, vision_language 0.1 (co-training data: captions,
  VQA, grounding; a corpus without it samples the other families exactly as before);
- ``uniform``: every available dataset weight 1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vlaflow.schemas import InputError

OXE_MAGIC_SOUP = {  # Octo's OXE_NAMED_MIXES["oxe_magic_soup"], by vlaflow's dataset names (the specs' `dataset`)
    "fractal20220817_data": 0.54087122203,
    "kuka": 0.8341046294,
    "bridge_dataset": 1.0,
    "taco_play": 2.0,
    "jaco_play": 1.0,
    "berkeley_cable_routing": 1.0,
    "roboturk": 2.0,
    "nyu_door_opening_surprising_effectiveness": 1.0,
    "viola": 2.0,
    "berkeley_autolab_ur5": 2.0,
    "toto": 1.0,
    "language_table": 0.1,
    "stanford_hydra_dataset_converted_externally_to_rlds": 2.0,
    "austin_buds_dataset_converted_externally_to_rlds": 1.0,
    "nyu_franka_play_dataset_converted_externally_to_rlds": 3.0,
    "furniture_bench_dataset_converted_externally_to_rlds": 0.1,
    "ucsd_kitchen_dataset_converted_externally_to_rlds": 2.0,
    "austin_sailor_dataset_converted_externally_to_rlds": 1.0,
    "austin_sirius_dataset_converted_externally_to_rlds": 1.0,
    "bc_z": 0.2,
    "dlr_edan_shared_control_converted_externally_to_rlds": 1.0,
    "iamlab_cmu_pickup_insert_converted_externally_to_rlds": 1.0,
    "utaustin_mutex": 1.0,
    "berkeley_fanuc_manipulation": 2.0,
    "cmu_stretch": 1.0,
}
# OpenVLA's "oxe_magic_soup_plus" adds these to the soup.
OXE_PLUS = {"fmb": 1.0, "dobbe": 0.2, "droid": 0.06}


@dataclass(frozen=True)
class Mixture:
    name: str
    weights: dict[str, float] = field(default_factory=dict)
    families: dict[str, float] | None = None
    default_weight: float = 0.0  # weight of a present dataset the preset does not name
    description: str = ""

    def resolve(self, datasets: Mapping[str, Mapping], weights: Mapping[str, float] | None = None,
                balance: bool = False) -> dict[str, float]:
        """Sampling probabilities over a corpus catalog's datasets: {dataset: probability}, summing to 1,
        zero-weight datasets omitted.

        ``datasets``: the catalog, {name: DatasetInfo json} (``task_family``; ``rows`` when ``balance``),
        e.g. ``catalog_datasets(manifest)``. ``weights``: the user's per-dataset weights (a corpus
        YAML's); each replaces the mixture's own weight for its dataset (0 leaves it out) and must
        name a dataset of the catalog.
        """
        own = dict(self.weights)
        if weights:
            unknown = sorted(str(n) for n in set(weights) - set(datasets))
            if unknown:
                raise InputError(f"mixture weights name dataset(s) {', '.join(unknown)} not in the corpus; "
                                 f"it has: {', '.join(sorted(datasets)) or 'no datasets'}")
            for n, w in weights.items():
                if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                    raise InputError(f"mixture weight of {n!r} must be a finite number >= 0, got {w!r}")
            own.update({n: float(w) for n, w in weights.items()})

        def weight(name):
            w = own.get(name, self.default_weight)
            if balance and w > 0:
                rows = datasets[name].get("rows")
                if rows is None:
                    raise InputError(f"mixture {self.name!r} with balance needs the size (rows) of {name!r}")
                w *= float(rows)
            return w

        if self.families is None:
            raw = {n: weight(n) for n in sorted(datasets)}
        else:
            raw = {}
            present = {}
            for n in sorted(datasets):
                fam = datasets[n].get("task_family")
                if fam is None:
                    raise InputError(f"mixture {self.name!r} splits by task family, but {n!r} has no task_family")
                if self.families.get(fam, 0) > 0 and weight(n) > 0:
                    present.setdefault(fam, []).append(n)
            total_fam = sum(self.families[f] for f in present)
            for fam, names in present.items():
                inner = sum(weight(n) for n in names)
                for n in names:
                    raw[n] = self.families[fam] / total_fam * weight(n) / inner
        raw = {n: w for n, w in raw.items() if w > 0}
        total = sum(raw.values())
        if not raw or total <= 0:
            raise InputError(f"mixture {self.name!r} selects none of the corpus' datasets: "
                             f"{', '.join(sorted(datasets)) or 'none'}")
        return {n: w / total for n, w in raw.items()}


PRESETS: dict[str, Mixture] = {
    "oxe_magic_soup": Mixture("oxe_magic_soup", dict(OXE_MAGIC_SOUP),
                              description="Octo/OpenVLA magic soup, vlaflow's Open-X datasets"),
    "oxe_magic_soup_plus": Mixture("oxe_magic_soup_plus", {**OXE_MAGIC_SOUP, **OXE_PLUS},
                                   description="OpenVLA's magic soup plus (adds DROID at 0.06)"),
    "oxe_flex": Mixture("oxe_flex", {**OXE_MAGIC_SOUP, "berkeley_gnm_recon": 1.0},
                        description="magic soup + navigation (Octo's oxe_flex_act_soup subset)"),
    "unified": Mixture("unified", {**OXE_MAGIC_SOUP, **OXE_PLUS},
                       families={"manipulation": 0.6, "navigation": 0.25, "egocentric": 0.1, "trajectory": 0.05,
                                 "vision_language": 0.1},
                       default_weight=1.0,
                       description="manipulation / navigation / egocentric / trajectory / vision_language"),
    "uniform": Mixture("uniform", {}, default_weight=1.0, description="every dataset equally"),
}


def get_mixture(name: str) -> Mixture:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown mixture {name!r}; presets: {', '.join(sorted(PRESETS))}") from None


def catalog_datasets(manifest: Mapping) -> dict[str, dict]:
    """A manifest's dataset catalog (an ingest's or a corpus') with ``rows`` and ``episodes`` counted
    from its shards: the ``datasets`` mapping ``Mixture.resolve`` takes."""
    out = {n: {**info, "rows": 0, "episodes": 0} for n, info in manifest.get("datasets", {}).items()}
    for s in manifest.get("shards", []):
        if s["dataset"] not in out:
            raise InputError(f"manifest shard {s.get('path')!r} belongs to {s['dataset']!r}, which its catalog lacks")
        out[s["dataset"]]["rows"] += s["rows"]
        out[s["dataset"]]["episodes"] += s["episodes"]
    return out


class MixtureSampler:
    """Seeded i.i.d. draws of dataset names with the given probabilities; deterministic per seed."""

    def __init__(self, probabilities: dict[str, float], seed: int = 0):
        self.names = sorted(probabilities)
        p = np.array([probabilities[n] for n in self.names], np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError("probabilities must be non-negative with a positive sum")
        self.p = p / p.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> list[str]:
        idx = self.rng.choice(len(self.names), size=n, p=self.p)
        return [self.names[i] for i in idx]

    def __iter__(self):
        while True:
            yield from self.sample(1024)
