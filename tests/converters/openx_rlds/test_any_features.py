"""Any features.json reads: the layouts the issue found crashing (taco_play's float depth tensors, tidybot's
string action, VIMA's Sequence of FeaturesDict) and the rest of TFDS's vocabulary (Text, ClassLabel,
float16/64, high-rank tensors). What has no unified column is kept verbatim in the raw side table."""
from __future__ import annotations

import io

import numpy as np
import pytest

from vlaflow.converters.openx_rlds import OpenXRLDSConverter
from vlaflow.converters.openx_rlds.catalog import CatalogError, Catalog, parse_features, write_catalog_dataset
from vlaflow.pipelines.corpus import Corpus
from vlaflow.pipelines.ingest import IngestConfig, run_ingest
from vlaflow.pipelines.validate import validate_output
from vlaflow.schemas import validate_episode
from vlaflow.schemas.raw import raw_table

# The TFDS catalog's feature structure of taco_play 0.1.0, as printed there (descriptions shortened).
TACO = """FeaturesDict({
    'steps': Dataset({
        'action': FeaturesDict({
            'actions': Tensor(shape=(7,), dtype=float32, description=absolute desired values for gripper pose (first 6 dimensions are x, y, z, yaw, pitch, roll), last dimension is open_gripper (-1 is open gripper, 1 is close)),
            'rel_actions_gripper': Tensor(shape=(7,), dtype=float32),
            'rel_actions_world': Tensor(shape=(7,), dtype=float32, description=relative actions for gripper pose in the robot base frame (first 6 dimensions are x, y, z, yaw, pitch, roll), last dimension is open_gripper (-1 is open gripper, 1 is close)),
            'terminate_episode': float32,
        }),
        'is_first': bool,
        'is_last': bool,
        'is_terminal': bool,
        'observation': FeaturesDict({
            'depth_gripper': Tensor(shape=(84, 84), dtype=float32),
            'depth_static': Tensor(shape=(150, 200), dtype=float32),
            'natural_language_embedding': Tensor(shape=(512,), dtype=float32),
            'natural_language_instruction': string,
            'rgb_gripper': Image(shape=(84, 84, 3), dtype=uint8),
            'rgb_static': Image(shape=(150, 200, 3), dtype=uint8, description=RGB static image of shape. (150, 200, 3). Subsampled from (200,200, 3) image.),
            'robot_obs': Tensor(shape=(15,), dtype=float32, description=EE position (3), EE orientation in euler angles (3), gripper width (1), joint positions (7), gripper action (1)),
            'structured_language_instruction': string,
        }),
        'reward': Scalar(shape=(), dtype=float32),
    }),
})"""

# tidybot's action is a string Tensor; a catalog-style layout around it.
TIDYBOT = """FeaturesDict({
    'episode_metadata': FeaturesDict({
        'file_path': string,
    }),
    'steps': Dataset({
        'action': string,
        'discount': Scalar(shape=(), dtype=float32),
        'is_first': bool,
        'is_last': bool,
        'is_terminal': bool,
        'language_instruction': Text(shape=(), dtype=string),
        'observation': FeaturesDict({
            'image': Image(shape=(24, 32, 3), dtype=uint8),
            'object': Tensor(shape=(), dtype=string),
            'receptacle': Tensor(shape=(), dtype=string),
        }),
        'reward': Scalar(shape=(), dtype=float32),
    }),
})"""

# VIMA: multimodal prompt assets are Sequences of FeaturesDicts inside each step (sizes shrunk).
VIMA = """FeaturesDict({
    'episode_metadata': FeaturesDict({
        'file_path': string,
        'robot_components_seg_ids': Sequence(Scalar(shape=(), dtype=int64)),
        'success': bool,
    }),
    'steps': Dataset({
        'action': FeaturesDict({
            'pose0_position': Tensor(shape=(3,), dtype=float32),
            'pose0_rotation': Tensor(shape=(4,), dtype=float32),
        }),
        'discount': Scalar(shape=(), dtype=float32),
        'is_first': bool,
        'is_last': bool,
        'is_terminal': bool,
        'multimodal_instruction': string,
        'multimodal_instruction_assets': FeaturesDict({
            'asset_type': Sequence(string),
            'frontal_image': Sequence(Tensor(shape=(8, 16, 3), dtype=uint8)),
            'key_name': Sequence(string),
            'segmentation_obj_info': Sequence({
                'obj_name': Sequence(string),
                'segm_id': Sequence(Scalar(shape=(), dtype=int64)),
            }),
        }),
        'observation': FeaturesDict({
            'ee': int64,
            'frontal_image': Tensor(shape=(8, 16, 3), dtype=uint8),
        }),
        'reward': Scalar(shape=(), dtype=float32),
    }),
})"""

# The rest of the vocabulary: ClassLabel, float16/64, rank-3 float tensors, uint16 depth images.
ASSORTED = """FeaturesDict({
    'steps': Dataset({
        'action': Tensor(shape=(4,), dtype=float64),
        'is_first': bool,
        'is_last': bool,
        'is_terminal': bool,
        'info': FeaturesDict({
            'mode': ClassLabel(shape=(), dtype=int64, num_classes=3),
            'half': Tensor(shape=(2,), dtype=float16),
        }),
        'observation': FeaturesDict({
            'voxels': Tensor(shape=(2, 3, 4), dtype=float32),
            'depth': Image(shape=(12, 16, 1), dtype=uint16),
            'image': Image(shape=(12, 16, 3), dtype=uint8),
        }),
    }),
})"""


def _write(tmp_path, name: str, text: str, **kw):
    cat = Catalog(name, "0.1.0", "test", {"train": 2}, text, path=name)
    return write_catalog_dataset(cat, tmp_path / "src", **kw)


def _read(root):
    conv = OpenXRLDSConverter(str(root))
    items = [e for u in conv.work_units(1 << 30) for e in conv.read(u)]
    assert all(hasattr(e, "raw") for e in items), [getattr(e, "reason", None) for e in items]
    for ep in items:
        validate_episode(ep)
    return conv, items


def test_catalog_text_parses_descriptions_with_parentheses():
    feats = parse_features(TACO)
    steps = feats["steps"].feature
    assert steps["action"]["actions"].shape == (7,)
    assert "(-1 is open gripper, 1 is close)" in steps["action"]["actions"].doc.desc
    assert steps["observation"]["rgb_static"].doc.desc.endswith("(200,200, 3) image.")
    assert steps["observation"]["depth_static"].shape == (150, 200)
    assert np.dtype(steps["observation"]["natural_language_instruction"].np_dtype).kind in "OSU"


@pytest.mark.parametrize("text, message", [
    ("FeaturesDict({'steps': Dataset({'a': Tensr(shape=(1,), dtype=float32)})})", "unknown feature class 'Tensr'"),
    ("FeaturesDict({'steps': Dataset({'a': float33})})", "unknown dtype 'float33'"),
    ("FeaturesDict({'steps': Dataset({a: float32})})", "expected a quoted key"),
])
def test_catalog_text_errors_are_one_line(text, message):
    with pytest.raises(CatalogError, match=message) as err:
        parse_features(text, "x.yaml")
    assert "\n" not in str(err.value) and "x.yaml" in str(err.value)


def test_taco_play_float_depth_becomes_millimetre_png(tmp_path):
    from PIL import Image

    root = _write(tmp_path, "taco_play", TACO, episodes=1, steps=3)
    conv, (ep,) = _read(root)
    assert conv.spec.dataset == "taco_play" and conv.warnings() == []
    assert {"depth_primary", "depth_wrist"} <= set(ep.images)
    # the depth the source holds, in metres, read back through TFDS's own parser
    steps, _ = conv._parse(next(_payloads(conv)))
    for t in range(ep.length):
        png = Image.open(io.BytesIO(ep.images["depth_primary"][t]))
        assert png.mode.startswith("I;16") and png.size == (200, 150)
        metres = steps["observation/depth_static"][t].astype(np.float64)
        want = np.where(metres > 0, np.clip(np.rint(metres * 1000), 1, 65535), 0)
        np.testing.assert_array_equal(np.asarray(png, dtype=np.float64), want)
    # the language embedding and the structured instruction have no unified column: kept verbatim
    assert set(conv.raw_schema().names) >= {"observation/natural_language_embedding",
                                            "observation/structured_language_instruction"}
    emb = raw_table([ep], conv.raw_schema())["observation/natural_language_embedding"].to_pylist()
    np.testing.assert_array_equal(np.asarray(emb, np.float32), steps["observation/natural_language_embedding"])


def _payloads(conv):
    from vlaflow.converters.openx_rlds.tfrecord import iter_records

    shard = conv.builder.shards[conv.splits[0]][0]
    with conv.builder.fs.open_input_file(shard.path) as f:
        for _, _, payload in iter_records(f):
            yield payload


def test_tidybot_string_action_is_kept_raw_not_converted(tmp_path):
    root = _write(tmp_path, "tidybot", TIDYBOT, episodes=2, steps=4)
    conv, items = _read(root)
    info = conv.datasets()[0]
    assert info.action_raw_keys == [] and info.embodiment == "generic"
    assert "action" in info.raw_keys and "observation/object" in info.raw_keys
    assert items[0].instruction.startswith("pick up the cup")
    col = raw_table(items, conv.raw_schema())["action"]
    assert col.type == "binary" and col.to_pylist()[0] == b"action 0"
    # end to end through the pipeline: a finished run, validated, nothing quarantined
    out = tmp_path / "out"
    res = run_ingest(IngestConfig(converter="openx_rlds", input=str(root), output=str(out), executor="local"))
    assert res.ledger["episodes_out"] == 2
    assert validate_output(str(out))[0] == []


def test_vima_ragged_prompt_assets_round_trip(tmp_path):
    root = _write(tmp_path, "vima_converted_externally_to_rlds", VIMA, episodes=2, steps=4, seed=3)
    conv, items = _read(root)
    schema = conv.raw_schema()
    assert str(schema.field("multimodal_instruction_assets/segmentation_obj_info/obj_name").type) == \
        "list<item: list<item: binary>>"
    steps, meta = conv._parse(next(_payloads(conv)))
    got = raw_table(items[:1], schema)
    obj = got["multimodal_instruction_assets/segmentation_obj_info/segm_id"].to_pylist()
    assert obj == [[list(map(int, x)) for x in step] for step in
                   steps["multimodal_instruction_assets/segmentation_obj_info/segm_id"]]
    img = got["multimodal_instruction_assets/frontal_image"].to_pylist()
    assert img == [[np.asarray(a).reshape(-1).tolist() for a in step]
                   for step in steps["multimodal_instruction_assets/frontal_image"]]
    assert items[0].extra["robot_components_seg_ids"] == meta["robot_components_seg_ids"].tolist()
    out = tmp_path / "out"
    run_ingest(IngestConfig(converter="openx_rlds", input=str(root), output=str(out), executor="local"))
    assert validate_output(str(out))[0] == []
    corpus = Corpus.open(str(out))
    raw = corpus.read_raw(items[0].episode_id, ["multimodal_instruction_assets/segmentation_obj_info/segm_id"])
    assert raw.column(2).to_pylist() == obj


def test_classlabel_float16_float64_high_rank(tmp_path):
    root = _write(tmp_path, "assorted", ASSORTED, episodes=1, steps=3)
    conv, (ep,) = _read(root)
    info = conv.datasets()[0]
    assert info.action_raw_keys == ["action[4]"]
    steps, _ = conv._parse(next(_payloads(conv)))
    np.testing.assert_array_equal(ep.action_raw, steps["action"].astype(np.float32))
    t = raw_table([ep], conv.raw_schema())
    assert str(t.schema.field("observation/voxels").type) == "fixed_size_list<item: float>[24]"
    assert t.schema.field("observation/voxels").metadata[b"shape"] == b"[2, 3, 4]"
    np.testing.assert_array_equal(np.asarray(t["info/half"].to_pylist(), np.float16),
                                  steps["info/half"])  # float16 widened exactly
    assert t["info/mode"].to_pylist() == steps["info/mode"].tolist()
    assert set(ep.images) == {"primary", "depth_primary"}  # uint16 depth image kept as its PNG bytes


FLOAT_IMAGE = """FeaturesDict({
    'steps': Dataset({
        'action': Tensor(shape=(3,), dtype=float32),
        'is_first': bool,
        'is_last': bool,
        'is_terminal': bool,
        'observation': FeaturesDict({
            'image': Image(shape=(12, 16, 3), dtype=uint8),
            'image_with_depth': Image(shape=(12, 16, 1), dtype=float32),
        }),
    }),
})"""


def test_tfds_float32_depth_image_becomes_millimetre_png(tmp_path):
    """berkeley_autolab_ur5's layout: a float32 Image, which TFDS stores as a PNG of the floats' bytes."""
    from PIL import Image

    root = _write(tmp_path, "float_depth", FLOAT_IMAGE, episodes=1, steps=3)
    conv, (ep,) = _read(root)
    assert conv.spec.cameras["depth_primary"] == "observation/image_with_depth"
    steps, _ = conv._parse(next(_payloads(conv)))
    feat = conv.builder.features()["steps"]["observation"]["image_with_depth"]
    for t in range(ep.length):
        metres = feat.decode_example_np(steps["observation/image_with_depth"][t])[..., 0]  # TFDS's own decoder
        assert 0.3 <= metres.min() and metres.max() <= 3.0
        got = np.asarray(Image.open(io.BytesIO(ep.images["depth_primary"][t])), dtype=np.float64)
        np.testing.assert_array_equal(got, np.rint(metres.astype(np.float64) * 1000))
