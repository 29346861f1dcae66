"""Conversion speed of the sim converters: steps/s of ``converter.read`` (one process, no Ray).

Times plan + read (HDF5 reading, standardization, image encoding, Episode assembly) on the real
fixtures in ``../shared/fixtures/sim`` and on generated files at release sizes for the formats with no
real fixture (LIBERO 128² × 2 cameras, RoboTwin 2.0 320×240 × 3 JPEG cameras, ManiSkill 128² × 1).
Generated frames carry texture and noise so encoders do real work.

    .venv/bin/python benchmarks/sim_convert.py [--json out.json] [--repeat 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT.parent / "shared/fixtures/sim"


def _generators():
    spec = importlib.util.spec_from_file_location("sim_generators", ROOT / "tests/converters/sim/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)

    def textured(h, w, seed=0):  # smooth gradients + noise, like a rendered scene
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y + seed * 7) % 255)], -1)
        return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)

    mod.pattern = textured
    return mod


def time_read(conv_cls, path, repeat: int, **opts) -> dict:
    from vlaflow.converters import ConverterOptions, Rejected

    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        conv = conv_cls(str(path), ConverterOptions(extra=opts))
        steps = episodes = rejected = 0
        for unit in conv.work_units(256 << 20):
            for item in conv.read(unit):
                if isinstance(item, Rejected):
                    rejected += 1
                else:
                    episodes += 1
                    steps += item.length
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return {"episodes": episodes, "steps": steps, "rejected": rejected, "seconds": round(best, 3),
            "steps_per_s": round(steps / best, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results as JSON ('-' = stdout)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per case")
    args = ap.parse_args(argv)
    from vlaflow.converters.sim import LiberoConverter, ManiSkillConverter, RobomimicConverter, RoboTwinConverter

    gen = _generators()
    results = {}
    cases = [
        ("robosuite raw Lift 1.4 (3 demos, no images)", RobomimicConverter, SIM / "robosuite_raw_lift_v1_4/demo.hdf5", {}),
        ("robosuite TwoArmHandover (7 demos, no images)", RobomimicConverter, SIM / "robosuite_roboturk_twoarm_handover/demo.hdf5", {}),
        ("robomimic Lift replay (64² × 2, PNG)", RobomimicConverter, SIM / "generated_robomimic_lift_replay/lift_replay_robomimic_64px.hdf5", {}),
        ("robomimic Lift replay (64² × 2, JPEG)", RobomimicConverter, SIM / "generated_robomimic_lift_replay/lift_replay_robomimic_64px.hdf5", {"image_format": "jpeg"}),
        ("LIBERO-layout Lift replay (64² × 2, PNG)", LiberoConverter, SIM / "generated_libero_layout_lift_replay/lift_replay_libero_layout_64px.hdf5", {}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gen.write_libero(tmp / "libero_10/KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5", demos=(120,) * 4, size=128)
        cases.append(("LIBERO generated (128² × 2, PNG)", LiberoConverter, tmp / "libero_10", {}))
        cases.append(("LIBERO generated (128² × 2, JPEG)", LiberoConverter, tmp / "libero_10", {"image_format": "jpeg"}))
        gen.write_robotwin2(tmp / "rt/task/cfg", 4, t=100, h=240, w=320)
        cases.append(("RoboTwin 2.0 generated (320×240 × 3 JPEG, swap + re-encode)", RoboTwinConverter, tmp / "rt/task/cfg", {}))
        gen.write_maniskill(tmp / "ms", n=4, t=100, size=128)
        cases.append(("ManiSkill generated pd_joint_pos (128² × 1, PNG, T+1 obs)", ManiSkillConverter, tmp / "ms", {}))
        for name, cls, path, opts in cases:
            if not Path(path).exists():
                print(f"skip (missing): {name}", file=sys.stderr)
                continue
            results[name] = time_read(cls, path, args.repeat, **opts)
            r = results[name]
            print(f"{name:70s} {r['steps']:6d} steps {r['seconds']:7.3f} s {r['steps_per_s']:10.1f} steps/s")
    out = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
           "results": results}
    if args.json:
        text = json.dumps(out, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
