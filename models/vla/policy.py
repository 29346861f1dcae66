"""Inference: ``load_policy(checkpoint_dir)`` → ``Policy``; ``predict(observation, instruction, embodiment)``
→ ``{slot: [H, width]}`` in the embodiment's own units.

The checkpoint folder holds what predict needs besides the weights: ``stats.json`` (the exact statistics
training normalized with) and ``embodiments.json`` (the embodiment specs used: slots, prompt). The
observation's state is normalized with ``tokenization.normalization.Normalizer`` for that
(dataset, embodiment) group, the model samples a normalized chunk for the embodiment's own slots only,
and the chunk is de-normalized with the inverse map. Keys of the result: the action slot names
(``arm.eef_pos_delta``, ``arm.gripper``, …) and, for bodies trained on trajectory targets (egocentric
rows), ``trajectory/<slot>`` for the trajectory slots that have statistics for that group.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from vlaflow.schemas import ACTION, STATE, TRAJECTORY, Embodiment
from vlaflow.tokenization.normalization import Normalizer

from .model import VLAModel

STATS = "stats.json"
EMBODIMENTS = "embodiments.json"
TRAJ_PREFIX = "trajectory/"


class PolicyError(ValueError):
    """A predict call the checkpoint cannot serve (unknown embodiment, wrong state, missing stats)."""


def _read_json(path: Path, what: str, hint: str):
    if not path.exists():
        raise PolicyError(f"{path.parent}: no {path.name} ({what}); {hint}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PolicyError(f"{path}: not valid JSON ({err})") from None


def _specs(raw) -> dict[str, dict]:
    """embodiments.json as {id: spec dict} (a list of specs is accepted too)."""
    if isinstance(raw, dict) and "embodiments" in raw and isinstance(raw["embodiments"], (list, dict)):
        raw = raw["embodiments"]
    if isinstance(raw, list):
        return {d["id"]: d for d in raw}
    return dict(raw)


class Policy:
    def __init__(self, model: VLAModel, stats: dict, specs: dict[str, dict], device: str = "cpu"):
        self.model = model.eval().to(device)
        self.config = model.config
        self.processor = model.processor()
        self.stats, self.device = stats, device
        self.specs = {k: Embodiment.from_dict(v, source=f"embodiments.json: {k}") for k, v in specs.items()}
        mode = self.config.normalization
        self.norm = {kind: Normalizer(stats, mode, layout=layout) for kind, layout in
                     (("action", ACTION), ("state", STATE), ("trajectory", TRAJECTORY))}
        self._encoder = None

    # ------------------------------------------------------------------ lookups
    def embodiment(self, name: str) -> Embodiment:
        if name not in self.specs or (self.config.embodiments and name not in self.config.embodiments):
            known = self.config.embodiments or tuple(self.specs)
            raise PolicyError(f"embodiment {name!r} was not seen by this checkpoint; known: {', '.join(known)}")
        return self.specs[name]

    def group(self, embodiment: str, dataset: str | None) -> tuple[str, dict]:
        groups = self.stats.get("groups", {})
        cands = {k: g for k, g in groups.items() if g.get("embodiment") == embodiment
                 and (dataset is None or g.get("dataset") == dataset)}
        if len(cands) == 1:
            return next(iter(cands.items()))
        if not cands:
            raise PolicyError(f"stats.json has no statistics for embodiment {embodiment!r}"
                              + (f" and dataset {dataset!r}" if dataset else ""))
        raise PolicyError(f"embodiment {embodiment!r} has statistics from several datasets "
                          f"({', '.join(sorted(g['dataset'] for g in cands.values()))}): pass dataset=")

    def trajectory_slots(self, entry: dict) -> list[str]:
        """Trajectory slots that had data for this group (so the model was trained to produce them)."""
        traj = entry.get("trajectory") or {}
        return [s.name for s in TRAJECTORY.slots if s.name in traj and any(traj[s.name].get("count", [0]))]

    # ------------------------------------------------------------------ observation → sample
    def _state(self, state, e: Embodiment, dataset: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        vec = np.zeros(STATE.width, np.float32)
        mask = np.zeros(STATE.width, bool)
        if state is None:
            return vec, mask
        if isinstance(state, dict):
            for slot, value in state.items():
                if slot not in e.state_slots:
                    raise PolicyError(f"state slot {slot!r} is not one of {name!r}'s state slots "
                                      f"({', '.join(e.state_slots) or 'none'})")
                a, b = STATE.range(slot)
                v = np.asarray(value, np.float32).ravel()
                if v.size > b - a:
                    raise PolicyError(f"state slot {slot!r} holds {b - a} values, got {v.size}")
                vec[a: a + v.size], mask[a: a + v.size] = v, True
        else:
            v = np.asarray(state, np.float32).ravel()
            if v.size != STATE.width:
                raise PolicyError(f"a state vector must be padded to {STATE.width} values (or pass {{slot: values}})"
                                  f", got {v.size}")
            vec, mask = v, STATE.mask_for(list(e.state_slots))
        vec = self.norm["state"].normalize(vec, dataset, name).astype(np.float32)
        return np.where(mask, vec, 0).astype(np.float32), mask

    def _vision(self, observation: dict) -> tuple[np.ndarray | None, np.ndarray, list]:
        cfg = self.config
        n = len(cfg.cameras)
        mask = np.zeros(n, bool)
        if cfg.vision == "none":
            return None, mask, []
        if cfg.vision == "encoder":
            imgs = observation.get("images") or {}
            frames = [imgs.get(role) for role in cfg.cameras]
            return None, np.array([f is not None for f in frames]), frames
        feats = np.zeros((n, cfg.vision_tokens, cfg.vision_dim), np.float32)
        given = observation.get("vision")
        if given is None and observation.get("images"):
            given = self._encode_images(observation["images"])
        for c, role in enumerate(cfg.cameras):
            if given and given.get(role) is not None:
                f = np.asarray(given[role], np.float32).reshape(-1, cfg.vision_dim)
                if f.shape[0] != cfg.vision_tokens:
                    raise PolicyError(f"vision[{role!r}] has {f.shape[0]} tokens, the model takes {cfg.vision_tokens}")
                feats[c], mask[c] = f, True
        return feats, mask, []

    def _encode_images(self, images: dict) -> dict:
        """A features-trained model given raw frames: run the encoder the features came from."""
        from .vision import to_rgb

        cfg = self.config
        if not cfg.vision_encoder:
            raise PolicyError("this checkpoint was trained on precomputed features and does not name its "
                              "vision_encoder: pass observation['vision'] features instead of images")
        if self._encoder is None:
            from vlaflow.models.vision_encoders import load_vision_encoder

            self._encoder = load_vision_encoder(cfg.vision_encoder, tokens=cfg.vision_tokens if cfg.vision_tokens > 1
                                                else 0, dtype="float16")
        out = {}
        for role, img in images.items():
            if img is None:
                continue
            pooled, toks = self._encoder.encode([to_rgb(img)])
            out[role] = (toks[0] if toks is not None else pooled)
        return out

    def prompt(self, e: Embodiment) -> str:
        """The embodiment prompt: the one training used when embodiments.json records it, else the spec's."""
        return e.extra.get("prompt") or e.prompt()

    # ------------------------------------------------------------------ predict
    def predict(self, observation: dict, instruction: str, embodiment: str, dataset: str | None = None,
                num_steps: int | None = None, seed: int | None = None) -> dict[str, np.ndarray]:
        cfg = self.config
        e = self.embodiment(embodiment)
        key, entry = self.group(embodiment, dataset)
        dataset = entry.get("dataset", key.split("/")[0])
        state, state_mask = self._state((observation or {}).get("state"), e, dataset, embodiment)
        vision, vision_mask, frames = self._vision(observation or {})
        h, a = cfg.horizon, cfg.action_dim
        aw = cfg.action_width
        own = np.zeros(a, bool)
        own[:aw] = ACTION.mask_for(list(e.action_slots))[:aw]
        traj_slots = self.trajectory_slots(entry) if a > aw else []
        if traj_slots:
            own[aw:] = TRAJECTORY.mask_for(traj_slots)[: a - aw]
        sample = {"dataset": dataset, "embodiment": embodiment, "task_family": "manipulation",
                  "instruction": instruction, "embodiment_prompt": self.prompt(e), "state": state,
                  "state_mask": state_mask, "target": np.zeros((h, a), np.float32),
                  "target_mask": np.broadcast_to(own, (h, a)).copy(), "vision": vision, "vision_mask": vision_mask,
                  "images": frames}
        batch = self.processor([sample], with_target=False)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        chunk = self.model.sample_actions(batch, num_steps=num_steps, generator=gen)[0].float().cpu().numpy()
        act = self.norm["action"].denormalize(chunk[:, :aw].astype(np.float64), dataset, embodiment)
        out = {}
        for slot in e.action_slots:
            s, t = ACTION.range(slot)
            out[slot] = act[:, s:t].astype(np.float32)
        if traj_slots:
            traj = np.zeros((h, TRAJECTORY.width))
            traj[:, : a - aw] = chunk[:, aw:]
            traj = self.norm["trajectory"].denormalize(traj, dataset, embodiment)
            for slot in traj_slots:
                s, t = TRAJECTORY.range(slot)
                out[TRAJ_PREFIX + slot] = traj[:, s:t].astype(np.float32)
        return out


def load_policy(checkpoint_dir: str | Path, device: str = "cpu") -> Policy:
    folder = Path(checkpoint_dir)
    if not (folder / "config.json").exists():
        raise PolicyError(f"{folder}: not a checkpoint folder (no config.json); train one with `vlaflow train`")
    stats = _read_json(folder / STATS, "the statistics training normalized with",
                       "run `vlaflow stats` on the corpus and train again (the train job copies it)")
    specs = _specs(_read_json(folder / EMBODIMENTS, "the embodiment specs training used",
                              "the train job writes it next to the weights"))
    return Policy(VLAModel.from_pretrained(folder, map_location=device), stats, specs, device)
