"""Registrations as data: converter options carry the user's specs (pickled, never re-read), each
converter resolves ids through its own registry, dataset specs round-trip as dicts with one-line
errors, and every transform is listed in one table whatever was imported before."""
from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from vlaflow.converters import Converter, ConverterOptions
from vlaflow.converters.openx_rlds import OpenXRLDSConverter
from vlaflow.converters.openx_rlds.converter import builtin_specs as openx_specs
from vlaflow.converters.openx_rlds.synth import write_sample_dataset
from vlaflow.converters.sim.common import builtin_specs as sim_specs
from vlaflow.converters.standardize import load_spec_file, spec_from_dict, spec_to_dict
from vlaflow.converters.transforms import transform_table
from vlaflow.schemas import ACTION, SpecError, get_embodiment, load_embodiment_files, validate_episode


def read_all(conv):
    return [item for unit in conv.work_units(1 << 30) for item in conv.read(unit)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("rlds"), episodes=2, steps=4, shards=1)


def my_widowx(tmp_path: Path, eid: str = "my_widowx", name: str = "My WidowX") -> Path:
    d = get_embodiment("widowx_250").to_dict()
    d.update(id=eid, name=name)
    p = tmp_path / f"{eid}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def bridge_spec(tmp_path: Path, **changes) -> Path:
    d = spec_to_dict(openx_specs()["bridge_dataset"])
    d.update(changes)
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_options_carry_the_specs_as_data_and_workers_never_reopen_the_files(tmp_path, sample):
    emb, spec = my_widowx(tmp_path), bridge_spec(tmp_path, embodiment="my_widowx")
    opts = ConverterOptions(split="train", spec_file=str(spec), embodiments=load_embodiment_files([emb]))
    shipped = pickle.dumps(opts)  # what Ray sends to a worker
    emb.unlink()
    spec.unlink()
    worker_opts = pickle.loads(shipped)
    assert worker_opts == opts and worker_opts.spec["embodiment"] == "my_widowx"
    conv = OpenXRLDSConverter(str(sample), worker_opts)
    eps = read_all(conv)
    assert len(eps) == 2
    for ep in eps:
        validate_episode(ep)
        assert ep.embodiment == "my_widowx"
        assert ep.embodiment_prompt.startswith("Robot: My WidowX, one 6-DoF arm with a parallel gripper.")
        assert ep.embodiment_prompt == conv.embodiments.get("my_widowx").prompt(rate_hz=5)
    assert conv.datasets()[0].embodiment == "my_widowx"
    assert conv.resolved_spec() == opts.spec
    assert conv.embodiments.get("my_widowx").to_dict() == opts.embodiments["my_widowx"]
    # the same options without the embodiment: the id is unknown, in one line
    with pytest.raises(SpecError, match="unknown embodiment 'my_widowx'.*--embodiment"):
        OpenXRLDSConverter(str(sample), replace(opts, embodiments={}))


def test_converter_registry_layers_builtins_plugin_dir_and_user_specs(tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    my_widowx(shipped, "plugin_arm", "Plugin Arm")
    my_widowx(shipped, "widowx_250", "WidowX 250 (plugin calibration)")  # a plugin may refine a built-in

    class Plain(Converter):
        name = "plain"

        def datasets(self):
            return []

        def work_units(self, target_bytes):
            return []

        def read(self, unit):
            return iter(())

    class Shipping(Plain):
        embodiment_dir = shipped

    assert "plugin_arm" not in Plain("x").embodiments and Plain("x").resolved_spec() is None
    plugin = Shipping("x")
    assert plugin.embodiments.get("plugin_arm").name == "Plugin Arm"
    assert plugin.embodiments.get("widowx_250").name == "WidowX 250 (plugin calibration)"
    assert plugin.embodiments.get("jaco_2") == get_embodiment("jaco_2")
    user = load_embodiment_files([my_widowx(tmp_path, "plugin_arm", "User Arm")])
    assert Shipping("x", ConverterOptions(embodiments=user)).embodiments.get("plugin_arm").name == "User Arm"
    assert get_embodiment("widowx_250").name == "WidowX 250"  # nothing leaked into a process global


@pytest.mark.parametrize("name", sorted(openx_specs()))
def test_builtin_openx_specs_round_trip_as_dicts(name):
    spec = openx_specs()[name]
    d = spec_to_dict(spec)
    assert spec_from_dict(yaml.safe_load(yaml.safe_dump(d)), source=spec.source) == spec


@pytest.mark.parametrize("name", sorted(sim_specs()))
def test_builtin_sim_specs_round_trip_as_dicts(name):
    spec = sim_specs()[name]
    assert spec_from_dict(yaml.safe_load(yaml.safe_dump(spec_to_dict(spec))), source=spec.source) == spec


def test_resolved_spec_of_a_builtin(sample):
    assert OpenXRLDSConverter(str(sample)).resolved_spec() == spec_to_dict(openx_specs()["bridge_dataset"])


BRIDGE = {"dataset": "d", "embodiment": "widowx_250"}


@pytest.mark.parametrize("extra, where, problem", [
    ({"action": [{"slot": "arm.jetpack", "key": "a"}]}, "action[0]", "unknown action slot 'arm.jetpack'"),
    ({"derive": [{"out": "o", "fn": "eval", "input": "a"}]}, "derive[0].fn", "unknown transform 'eval'"),
    ({"action": [{"slot": "arm.gripper"}]}, "action[0]", "missing or not a string: 'key'"),
    ({"cameras": ["observation/image"]}, "cameras", "expected a mapping"),
    ({"action": {"slot": "arm.gripper"}}, "action", "expected a list"),
    ({"fps": "fast"}, "fps", ""),
    ({"embodiment": 3}, "embodiment", "missing or not a string"),
    ({"actions": []}, "actions", "unknown key"),
    ({"derive": [{"out": "o", "fn": "scale", "input": "a", "params": [2]}]}, "derive[0].params", "expected a mapping"),
])
def test_spec_errors_are_one_line_with_file_key_and_problem(tmp_path, extra, where, problem):
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump({**BRIDGE, **extra}))
    with pytest.raises(SpecError) as err:
        load_spec_file(p)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{p}: {where}") and problem in msg


def test_spec_yaml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("dataset: d\nembodiment: widowx_250\naction:\n  - {slot: arm.gripper, key: a\n")
    with pytest.raises(SpecError) as err:
        ConverterOptions(spec_file=str(p))  # read where the options are built (the driver)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{p}: YAML syntax error at line ")


def test_the_transform_table_lists_every_named_function():
    import vlaflow.converters.sim.transforms as sim
    import vlaflow.converters.transforms as openx

    table = transform_table()
    for module in (openx, sim):
        for name, fn in vars(module).items():
            if callable(fn) and getattr(fn, "__module__", "") == module.__name__ and not name.startswith("_"):
                if name in ("transform_table", "codepoints_to_text", "bgr_to_rgb_image",
                            "euler_intrinsic_xyz_to_rotvec"):
                    continue  # helpers on whole records or rotations, not per-trajectory transforms
                assert table[name] is fn, name
    assert table["next_step"].invalidates_last and table["relabel_from_state"].invalidates_last


FRESH = """
import sys
from pathlib import Path
import numpy as np
import yaml
from vlaflow.converters import ConverterOptions
from vlaflow.converters.openx_rlds import OpenXRLDSConverter
assert not any(m.startswith("vlaflow.converters.sim") for m in sys.modules), "sim already imported"
spec = yaml.safe_load(Path(sys.argv[2]).read_text())
conv = OpenXRLDSConverter(sys.argv[1], ConverterOptions(spec=spec, spec_file=sys.argv[2]))
eps = [i for u in conv.work_units(1 << 30) for i in conv.read(u)]
print(yaml.safe_dump([[float(v) for v in e.action[:, int(sys.argv[3])]] for e in eps]))
"""


def test_openx_spec_using_a_sim_transform_in_a_fresh_interpreter(tmp_path, sample):
    """osc_scale lives in converters/sim/; an Open-X spec names it before anything imported sim."""
    params = {"input_min": 0.0, "input_max": 1.0, "output_min": 0.25, "output_max": 0.75}
    d = spec_to_dict(openx_specs()["bridge_dataset"])
    d["derive"] = [x for x in d["derive"] if x["out"] != "gripper"] + [
        {"out": "gripper", "fn": "osc_scale", "input": "action", "index": [6, 7], "params": params}]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(d))
    g, _ = ACTION.range("arm.gripper")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(FRESH), str(sample), str(spec), str(g)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = yaml.safe_load(r.stdout)
    # the expectation, from the source gripper (1 open, then 0): [0, 1] mapped linearly onto [0.25, 0.75]
    want = [(0.25 + 0.5 * np.asarray(e.action_raw, np.float64)[:, 6]).astype(np.float32).tolist()
            for e in read_all(OpenXRLDSConverter(str(sample)))]
    assert got == want and len(got) == 4 and {0.25, 0.75} <= set(got[0])
