"""Adding a robot, end to end through Ray: the user's ``--embodiment`` + ``--spec``, a converter plugin
that ships its own embodiment YAML, and one-line errors for a bad YAML. Ray workers never saw the
user's files: the specs travel as data in the converter options, and ``vlaflow validate`` resolves
them from the output's ``meta/`` without flags."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from vlaflow.converters import ConverterOptions
from vlaflow.converters.openx_rlds.converter import SPEC_DIR
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import Col, Embodiment, EmbodimentRegistry, load_embodiment_files
from vlaflow.schemas.embodiment import BUILTIN_DIR

pytestmark = pytest.mark.slow

VLAFLOW = [sys.executable, "-m", "vlaflow.pipelines.cli"]
ENV = {**os.environ, "RAY_ADDRESS": ""}
PROMPT = ("Robot: My WidowX, one 6-DoF arm with a parallel gripper. Action: end-effector position delta (m) and "
          "rotation delta (rad, axis-angle) in the base frame at 5 Hz; gripper 1 = open.")


def run(*args, env=None, timeout=300):
    return subprocess.run([*VLAFLOW, *map(str, args)], capture_output=True, text=True, env=env or ENV,
                          timeout=timeout)


def user_files(tmp_path: Path) -> tuple[Path, Path]:
    """What the docs tell a user to do: copy the built-in WidowX spec and the Bridge dataset spec, give the
    robot a new id, point the dataset spec at it."""
    emb = tmp_path / "my.yaml"
    emb.write_text((BUILTIN_DIR / "widowx_250.yaml").read_text()
                   .replace("id: widowx_250", "id: my_widowx").replace("name: WidowX 250", "name: My WidowX"))
    spec = tmp_path / "spec.yaml"
    spec.write_text((SPEC_DIR / "bridge_dataset.yaml").read_text()
                    .replace("embodiment: widowx_250", "embodiment: my_widowx"))
    return emb, spec


def rows(out: Path):
    return pq.read_table(sorted(out.glob("data/**/*.parquet")), columns=[Col.EMBODIMENT, Col.EMBODIMENT_PROMPT])


def test_user_embodiment_and_spec_through_ray_workers(tmp_path, ray_local):
    src = write_sample_dataset(tmp_path / "src", episodes=4, steps=5, shards=2)
    emb, spec = user_files(tmp_path)
    options = ConverterOptions(spec_file=str(spec), embodiments=load_embodiment_files([emb]))
    emb.unlink()  # the workers can only have the specs from the options
    spec.unlink()
    out = tmp_path / "out"
    result = run_ingest(IngestConfig("openx_rlds", str(src), str(out), options, target_shard_mb=0.001))
    assert "Ray" in result.ray and result.clean and result.ledger["episodes_out"] == 8
    t = rows(out)
    assert pc.unique(t[Col.EMBODIMENT].cast("string")).to_pylist() == ["my_widowx"]
    assert pc.unique(t[Col.EMBODIMENT_PROMPT].cast("string")).to_pylist() == [PROMPT]
    meta = out / "meta/datasets/bridge_dataset"
    assert yaml.safe_load((meta / "embodiments/my_widowx.yaml").read_text()) == options.embodiments["my_widowx"]
    assert yaml.safe_load((meta / "spec.yaml").read_text()) == options.spec
    problems, stats = validate_output(str(out))
    assert problems == [] and stats["episodes"] == 8


def test_the_documented_cli_command_and_validate_without_flags(tmp_path):
    """The command from the issue: `--spec spec.yaml --embodiment my.yaml`, then `vlaflow validate OUT`."""
    r = run("sample-rlds", tmp_path / "src", "--episodes", "3", "--steps", "4", "--shards", "1")
    src = Path(r.stdout.strip())
    emb, spec = user_files(tmp_path)
    out = tmp_path / "out"
    r = run("ingest", "--converter", "openx_rlds", "--input", src, "--output", out, "--spec", spec,
            "--embodiment", emb, "--num-cpus", 2, "--executor", "ray")  # the files travel to Ray workers as data
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "on a local Ray instance" in r.stderr
    assert pc.unique(rows(out)[Col.EMBODIMENT_PROMPT].cast("string")).to_pylist() == [PROMPT]
    emb.unlink()  # validate reads the robot from the output, not from the user's file
    r = run("validate", out)
    assert r.returncode == 0 and "all invariants hold" in r.stderr, r.stderr


PLUGIN = '''
"""A third-party converter that ships its robot: one CSV file per episode (dx, dy, grip, instruction)."""
import csv
from fractions import Fraction
from pathlib import Path

import numpy as np

from vlaflow.converters import Converter, Rejected, WorkUnit
from vlaflow.schemas import ACTION, DatasetInfo, FeatureMismatch

FPS = Fraction(10)


class RailArmConverter(Converter):
    name = "rail_arm_csv"
    version = "0.1"
    description = "test plugin: CSV episodes of a robot the plugin ships"
    embodiment_dir = Path(__file__).parent / "embodiments"

    def datasets(self):
        return [DatasetInfo(name="rail_arm_demos", task_family="manipulation", embodiment="rail_arm", fps=FPS,
                            license="CC0-1.0", converter=self.name, converter_version=self.version,
                            action_raw_keys=["dx[1]", "dy[1]", "grip[1]"])]

    def work_units(self, target_bytes):
        files = sorted(Path(self.input_path).glob("*.csv"))
        return [WorkUnit(str(p), "train", nbytes=p.stat().st_size, file_index=i) for i, p in enumerate(files)]

    def read(self, unit):
        key = f"rail_arm_demos/train/{Path(unit.source).stem}"
        rows = list(csv.DictReader(open(unit.source)))
        try:
            raw = np.array([[float(r["dx"]), float(r["dy"]), float(r["grip"])] for r in rows], np.float32)
        except (KeyError, ValueError) as err:
            yield Rejected(key, FeatureMismatch.code, f"bad row: {err}", unit.source)
            return
        action = np.zeros((len(rows), ACTION.width), np.float32)
        lo, _ = ACTION.range("arm.eef_pos_delta")
        g, _ = ACTION.range("arm.gripper")
        action[:, lo:lo + 2], action[:, g] = raw[:, :2], raw[:, 2]
        mask = np.zeros(ACTION.width, bool)
        mask[[lo, lo + 1, g]] = True
        yield self.make_episode(key, action=action, action_mask=mask, action_raw=raw,
                                instruction=rows[0]["instruction"], split="train", source_file=unit.source,
                                source_index=0)
'''

RAIL_ARM = """\
id: rail_arm
name: Rail Arm
kind: robot
arms: [{name: arm, dof: 4, gripper: suction}]
base: wheeled
cameras: [primary]
control_mode: eef_delta_planar
action_slots: [arm.eef_pos_delta, arm.gripper]
frame: rail
rate_hz: 10
"""


def install_plugin(tmp_path: Path) -> Path:
    """An installed package without pip: the module, its embodiment YAML, and a dist-info whose
    entry_points.txt registers the converter (what `pip install` of a plugin leaves behind)."""
    site = tmp_path / "site"
    pkg = site / "vlaflow_robot_plugin"
    (pkg / "embodiments").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (pkg / "embodiments/rail_arm.yaml").write_text(RAIL_ARM)
    info = site / "vlaflow_robot_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vlaflow-robot-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vlaflow.converters]\n"
                                           "rail_arm_csv = vlaflow_robot_plugin:RailArmConverter\n")
    return site


def test_a_plugin_package_that_ships_its_own_embodiment(tmp_path):
    site = install_plugin(tmp_path)
    env = {**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    data = tmp_path / "csv"
    data.mkdir()
    for i in range(4):
        (data / f"ep{i}.csv").write_text("dx,dy,grip,instruction\n" + "".join(
            f"{0.01 * k},{-0.02 * i},{k % 2},push block {i}\n" for k in range(5)))
    out = tmp_path / "out"
    r = run("ingest", "--converter", "rail_arm_csv", "--input", data, "--output", out, "--num-cpus", 2,
            "--target-shard-mb", 0.0001, "--executor", "ray", env=env)  # the plugin imports in Ray workers
    assert r.returncode == 0, r.stderr
    assert "0 of 4 group(s) already done" in r.stderr and "on a local Ray instance" in r.stderr
    want = (EmbodimentRegistry.builtin().with_specs([yaml.safe_load(RAIL_ARM)]).get("rail_arm").prompt(rate_hz=10))
    assert want.startswith("Robot: Rail Arm, one 4-DoF arm with a suction gripper and a wheeled base.")
    t = rows(out)
    assert t.num_rows == 20 and pc.unique(t[Col.EMBODIMENT_PROMPT].cast("string")).to_pylist() == [want]
    written = yaml.safe_load((out / "meta/datasets/rail_arm_demos/embodiments/rail_arm.yaml").read_text())
    assert Embodiment.from_dict(written) == Embodiment.from_dict(yaml.safe_load(RAIL_ARM))
    r = run("validate", out)  # no plugin on the path: the robot is read from the output
    assert r.returncode == 0 and "all invariants hold" in r.stderr, r.stderr


@pytest.mark.parametrize("name, text, where, problem", [
    ("slot.yaml", "id: x\nname: X\nkind: robot\ncontrol_mode: a\nframe: base\naction_slots: [arm.eef_vel]\n",
     "action_slots[0]", "unknown action slot 'arm.eef_vel'"),
    ("missing.yaml", "id: x\nname: X\nkind: robot\ncontrol_mode: a\naction_slots: [arm.gripper]\n", "frame", "missing"),
    ("type.yaml", "id: x\nname: X\nkind: robot\ncontrol_mode: a\nframe: base\naction_slots: [arm.gripper]\n"
     "arms: [{name: arm, dof: 6.5}]\n", "arms[0].dof", "expected a positive integer"),
    ("syntax.yaml", "id: x\nname: X\n  kind: robot\n", "YAML syntax error at line 3", ""),
])
def test_a_bad_embodiment_yaml_is_exit_2_and_one_line(tmp_path, name, text, where, problem):
    bad = tmp_path / name
    bad.write_text(text)
    r = run("ingest", "--converter", "openx_rlds", "--input", tmp_path, "--output", tmp_path / "out",
            "--embodiment", bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert f"{bad}: {where}" in r.stderr and problem in r.stderr


def test_a_duplicate_id_and_a_bad_spec_are_exit_2_and_one_line(tmp_path):
    emb, spec = user_files(tmp_path)
    twin = tmp_path / "twin.yaml"
    twin.write_text(emb.read_text())
    r = run("ingest", "--converter", "openx_rlds", "--input", tmp_path, "--output", tmp_path / "out",
            "--embodiment", emb, "--embodiment", twin)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"{twin}: id: 'my_widowx' is already defined in {emb}" in r.stderr
    spec.write_text(spec.read_text().replace("fn: binarize_gripper", "fn: binarise_gripper"))
    r = run("ingest", "--converter", "openx_rlds", "--input", tmp_path, "--output", tmp_path / "out",
            "--embodiment", emb, "--spec", spec)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert f"{spec}: derive[1].fn: unknown transform 'binarise_gripper'" in r.stderr
