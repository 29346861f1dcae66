import json
import struct

import numpy as np
import pytest
from tensorflow_datasets.proto import tf_example_generated_pb2 as example_pb2

from vlaflow.converters import ConverterOptions, Rejected
from vlaflow.converters.openx_rlds import OpenXRLDSConverter, builtin_specs
from vlaflow.converters.openx_rlds.tfrecord import frame
from vlaflow.schemas import ACTION, STATE, InputError, validate_episode


def read_all(conv):
    return [item for unit in conv.work_units(256 << 20) for item in conv.read(unit)]


def raw_examples(path):
    """Independent reading: struct framing + protobuf, none of vlaflow's parsing."""
    data = path.read_bytes()
    off, out = 0, []
    while off < len(data):
        (n,) = struct.unpack_from("<Q", data, off)
        out.append(example_pb2.Example.FromString(data[off + 12: off + 12 + n]).features.feature)
        off += n + 16
    return out


def test_builtin_specs_cover_ten_open_x_datasets():
    assert {"bridge_dataset", "fractal20220817_data", "kuka", "taco_play", "jaco_play", "language_table",
            "berkeley_autolab_ur5", "toto", "droid", "berkeley_gnm_recon"} <= set(builtin_specs())


def test_real_bridge_fixture_bit_exact(bridge_fixture):
    conv = OpenXRLDSConverter(str(bridge_fixture))
    items = read_all(conv)
    assert len(items) == 50 and not any(isinstance(i, Rejected) for i in items)
    by_split = {s: [e for e in items if e.split == s] for s in ("train", "val")}
    for split, eps in by_split.items():
        assert len(eps) == 25 and all(e.length == 10 for e in eps)
        src = raw_examples(bridge_fixture / f"bridge_dataset-{split}.tfrecord-00000-of-00001")
        for ep, feat in zip(eps, src):
            validate_episode(ep)
            want = np.array(feat["steps/action"].float_list.value, np.float32).reshape(10, 7)
            assert ep.action_raw.tobytes() == want.tobytes()  # bit for bit
            assert ep.images["primary"] == list(feat["steps/observation/image_0"].bytes_list.value)
            assert ep.images["wrist"] == list(feat["steps/observation/image_3"].bytes_list.value)
            instr = feat["steps/language_instruction"].bytes_list.value[0].decode()
            assert ep.instruction == instr and ep.instructions == [instr]
            assert ep.extra["file_path"] == feat["episode_metadata/file_path"].bytes_list.value[0].decode()
    ep = by_split["train"][0]
    # normalized: relabelled EEF deltas from the reached state, binarized gripper, rotvec rotations
    s = ep.state_raw.astype(np.float64)
    lo, _ = ACTION.range("arm.eef_pos_delta")
    np.testing.assert_allclose(ep.action[:-1, lo:lo + 3], s[1:, :3] - s[:-1, :3], atol=1e-6)
    g, _ = ACTION.range("arm.gripper")
    assert set(np.unique(ep.action[:, g])) <= {0.0, 1.0}
    assert not ep.action_valid[-1] and ep.action_valid[:-1].all()
    assert ep.is_last[-1] and ep.extra["source_is_last"] is False  # the debug subsample is cut short
    assert ep.timestamp_ns[1] == 200_000_000  # 5 Hz
    info = conv.datasets()[0]
    assert info.action_raw_keys == ["action[7]"] and info.embodiment == "widowx_250"
    assert info.fps == 5 and info.image_transform == "none"


def test_dict_action_flattened_in_features_json_order(fractal_like):
    root, src = fractal_like
    conv = OpenXRLDSConverter(str(root))
    items = read_all(conv)
    assert [e.length for e in items] == [len(e["steps"]) for e in src]
    assert len({e.episode_id for e in items}) == 6  # unique across the 3 index-named shards
    fj = json.loads((root / "features.json").read_text())
    order = list(fj["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
                 ["action"]["featuresDict"]["features"])
    widths = {"world_vector": 3, "rotation_delta": 3, "gripper_closedness_action": 1, "terminate_episode": 3,
              "base_displacement_vector": 2}
    assert conv.datasets()[0].action_raw_keys == [f"action/{k}[{widths[k]}]" for k in order]
    ep, s = items[0], src[0]["steps"]
    want = np.stack([np.concatenate([np.asarray(st["action"][k], np.float32).reshape(-1) for k in order])
                     for st in s])
    assert ep.action_raw.tobytes() == want.astype(np.float32).tobytes()
    lo, _ = ACTION.range("arm.eef_pos_delta")
    np.testing.assert_array_equal(ep.action[:, lo:lo + 3], np.stack([st["action"]["world_vector"] for st in s]))
    g, _ = ACTION.range("arm.gripper")
    np.testing.assert_array_equal(ep.action[:, g], [1, 1, 0, 0, 0])  # close event at step 2
    assert ep.instruction == "pick object 0"
    assert ep.action_valid[-1] == False  # noqa: E712  (RLDS is_last step)


def test_float64_fields_and_several_instructions(droid_like):
    root, src = droid_like
    ep = read_all(OpenXRLDSConverter(str(root)))[0]
    validate_episode(ep)
    raw = np.stack([st["action"] for st in src[0]["steps"]]).astype(np.float32)
    assert ep.action_raw.tobytes() == raw.tobytes()  # float64 → float32 on the wire, kept as-is
    lo, _ = ACTION.range("arm.eef_pos_delta")
    cv = np.stack([st["action_dict"]["cartesian_velocity"] for st in src[0]["steps"]]).astype(np.float32)
    np.testing.assert_allclose(ep.action[:, lo:lo + 3], cv[:, :3])
    g, _ = ACTION.range("arm.gripper")
    np.testing.assert_allclose(ep.action[:, g], 0.75)  # 1 - gripper_position (1 = closed in DROID)
    assert ep.instructions == ["put the marker in the cup", "marker into cup"]
    assert set(ep.images) == {"primary", "secondary", "wrist"}


def test_zlib_depth_codepoints_and_generic_fallback(sensor_variants):
    write, src = sensor_variants
    ep = read_all(OpenXRLDSConverter(str(write("language_table"))))[0]
    validate_episode(ep)
    assert ep.instruction == "push the red star"
    want = np.stack([st["observation"]["effector_translation"] for st in src[0]["steps"]])
    a, _ = STATE.range("arm.eef_pos")
    np.testing.assert_array_equal(ep.state[:, a:a + 2], want)  # zlib-encoded tensor decoded
    conv = OpenXRLDSConverter(str(write("my_lab_robot")))
    assert any("no spec for dataset 'my_lab_robot'" in w for w in conv.warnings())
    resolved = conv.resolved_spec()  # what the ingest writes into meta/: the generic fallback, as data
    assert (resolved["embodiment"], resolved["action"], resolved["cameras"]) == ("generic", [], conv.spec.cameras)
    ep = read_all(conv)[0]
    validate_episode(ep)
    assert ep.embodiment == "generic" and not ep.action_mask.any()
    assert ep.images["depth_primary"] == [st["observation"]["depth"] for st in src[0]["steps"]]
    assert ep.images["depth_primary"][0][:8] == b"\x89PNG\r\n\x1a\n"


def test_user_spec_file_and_missing_optional_key(tmp_path, sensor_variants):
    write, src = sensor_variants
    root = write("my_lab_robot")
    spec = tmp_path / "spec.yaml"
    spec.write_text("dataset: my_lab_robot\nembodiment: xarm_pusher\nfps: [30000, 1001]\n"
                    "cameras: {primary: observation/rgb}\n"
                    "action: [{slot: arm.eef_pos_delta, key: action}]\n")
    # drop steps/reward from one record, as TFDS omits None leaves
    shard = next(root.glob("*.tfrecord-*"))
    data = shard.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    ex = example_pb2.Example.FromString(data[12:12 + n])
    del ex.features.feature["steps/reward"]
    shard.write_bytes(frame(ex.SerializeToString()) + data[n + 16:])
    conv = OpenXRLDSConverter(str(root), ConverterOptions(spec_file=str(spec)))
    first, second = read_all(conv)
    assert first.reward is None and second.reward is not None
    assert conv.datasets()[0].fps.denominator == 1001
    assert first.timestamp_ns[1] == 33_366_667  # round(1e9 * 1001 / 30000), integer arithmetic
    lo, _ = ACTION.range("arm.eef_pos_delta")
    assert first.action_mask[lo:lo + 3].tolist() == [True, True, False]


def test_bgr_cameras_are_swapped_back(tmp_path):
    from vlaflow.converters.openx_rlds.synth import encode_jpeg, write_rlds_dataset
    from tensorflow_datasets.core import features as F
    import io
    import tensorflow_datasets as tfds
    from PIL import Image

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200  # red
    feats = F.FeaturesDict({"steps": tfds.features.Dataset({
        "observation": F.FeaturesDict({"image": F.Image(shape=(16, 16, 3), encoding_format="jpeg"),
                                       "hand_image": F.Image(shape=(16, 16, 3), encoding_format="jpeg"),
                                       "image_with_depth": F.Image(shape=(16, 16, 1), dtype=np.float32),
                                       "robot_state": F.Tensor(shape=(15,), dtype=np.float32),
                                       "natural_language_instruction": F.Text()}),
        "action": F.FeaturesDict({"world_vector": F.Tensor(shape=(3,), dtype=np.float32),
                                  "rotation_delta": F.Tensor(shape=(3,), dtype=np.float32),
                                  "gripper_closedness_action": F.Scalar(dtype=np.float32)}),
        "is_first": F.Scalar(dtype=np.bool_), "is_last": F.Scalar(dtype=np.bool_)})})
    bgr = encode_jpeg(rgb[..., ::-1])
    depth = np.full((16, 16, 1), 0.75, np.float32)
    step = lambda i: {"observation": {"image": bgr, "hand_image": bgr, "image_with_depth": depth, "robot_state": np.r_[np.zeros(12), 1, 0, 0].astype(np.float32),  # noqa: E731
                                      "natural_language_instruction": "x"},
                      "action": {"world_vector": np.zeros(3, np.float32), "rotation_delta": np.zeros(3, np.float32),
                                 "gripper_closedness_action": 0.0}, "is_first": i == 0, "is_last": i == 1}
    root = write_rlds_dataset(tmp_path, "berkeley_autolab_ur5", "0.1.0", feats, {"train": [{"steps": [step(0), step(1)]}]})
    conv = OpenXRLDSConverter(str(root))
    ep = read_all(conv)[0]
    px = np.asarray(Image.open(io.BytesIO(ep.images["primary"][0])).convert("RGB")).astype(int)
    assert px[..., 0].mean() > 150 and px[..., 2].mean() < 50
    assert conv.datasets()[0].image_transform == "bgr_to_rgb"
    assert (np.asarray(Image.open(io.BytesIO(ep.images["depth_primary"][0]))) == 750).all()  # not channel-swapped


def test_bad_records_become_named_rejections(tmp_path):
    from vlaflow.converters.openx_rlds.synth import write_sample_dataset

    root = write_sample_dataset(tmp_path, episodes=6, steps=4, shards=1)
    shard = root / "bridge_dataset-train.tfrecord-00000-of-00001"
    data = bytearray(shard.read_bytes())
    offsets, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from("<Q", data, off)
        offsets.append((off, n))
        off += n + 16
    data[offsets[1][0] + 40] ^= 0x01  # flipped byte in record 1
    ex = example_pb2.Example.FromString(bytes(data[offsets[3][0] + 12: offsets[3][0] + 12 + offsets[3][1]]))
    del ex.features.feature["steps/action"].float_list.value[-1]  # record 3 no longer matches features.json
    rec3 = frame(ex.SerializeToString())
    tail_start = offsets[5][0]
    data = bytes(data[:offsets[3][0]]) + rec3 + bytes(data[offsets[4][0]:tail_start]) + bytes(data[tail_start:tail_start + 30])
    shard.write_bytes(data)
    items = read_all(OpenXRLDSConverter(str(root), ConverterOptions(split="train")))
    kinds = [(i.code if isinstance(i, Rejected) else "ok") for i in items]
    assert kinds == ["ok", "corrupt_record", "ok", "feature_mismatch", "ok", "truncated_record"]
    assert "CRC32C" in items[1].reason and "bridge_dataset/train/00000-000001" == items[1].episode_key


def test_wrong_inputs_are_one_line_errors(tmp_path, bridge_fixture):
    with pytest.raises(InputError, match="input not found"):
        OpenXRLDSConverter(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="no features.json"):
        OpenXRLDSConverter(str(tmp_path))
    with pytest.raises(InputError, match=r"split\(s\) \['test'\]"):
        OpenXRLDSConverter(str(bridge_fixture), ConverterOptions(split="test"))
    empty = tmp_path / "ds" / "1.0.0"
    empty.mkdir(parents=True)
    (empty / "features.json").write_text((bridge_fixture / "features.json").read_text())
    with pytest.raises(InputError, match="no TFRecord shards"):
        OpenXRLDSConverter(str(empty))


def test_auto_detection(bridge_fixture, tmp_path):
    from vlaflow.converters import sniff

    assert OpenXRLDSConverter.sniff(str(bridge_fixture)) and not OpenXRLDSConverter.sniff(str(tmp_path))
    assert sniff(str(bridge_fixture)) == "openx_rlds"
    with pytest.raises(InputError, match="no installed converter recognizes"):
        sniff(str(tmp_path))
