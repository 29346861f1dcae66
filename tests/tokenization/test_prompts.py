"""Prompts for real Bridge rows with a locally built tokenizer and chat template; navigation text."""
from __future__ import annotations

import numpy as np
import pytest

from vlaflow.schemas import ACTION, STATE, get_embodiment
from vlaflow.tokenization.tokenizers.bins import BinActionTokenizer
from vlaflow.tokenization.sampling.chunks import action_chunks
from vlaflow.tokenization.tokenizers.fast import FASTActionTokenizer, FASTTokenizer
from vlaflow.tokenization.normalization import Normalizer
from vlaflow.tokenization.prompts import IGNORE, PromptBuilder, nav_commands_text, parse_nav_text, state_text

GROUP = ("bridge_dataset", "widowx_250")


@pytest.fixture(scope="module")
def sample(bridge_ingest, bridge_rows):
    """One real training sample: the chunk starting at some row, its prompt, instruction, state."""
    _, stats = bridge_ingest
    r = bridge_rows
    y = Normalizer(stats, "quantile").normalize(r["action"], *GROUP)
    chunks, pos, starts = action_chunks(y, r["action_mask"], r["action_valid"], r["episode_id"], horizon=5)
    i = 37
    row = starts[i]
    s = Normalizer(stats, "bounds", layout="state").normalize(r["state"][row], *GROUP)
    state = s[r["state_mask"][row]]
    return dict(chunk=chunks[i], chunks=chunks, prompt=r["embodiment_prompt"][row],
                instruction=r["instruction"][row], state=state)


def test_bin_tokens_prompt_labels_and_round_trip(sample, tiny_tokenizer):
    at = BinActionTokenizer(tiny_tokenizer)
    pb = PromptBuilder(tiny_tokenizer)
    ids = at.encode(sample["chunk"])
    p = pb.build(sample["prompt"], sample["instruction"], state=sample["state"], action_ids=ids)
    assert p.text.startswith("<|im_start|>system\nRobot: WidowX 250, one 6-DoF arm")
    assert f"<|im_start|>user\nTask: {sample['instruction']}\nState: " in p.text
    assert "<|im_start|>assistant\n<|act_" in p.text and p.text.endswith("<|im_end|>\n")
    # the target sits right after the prompt, as the very ids the action tokenizer gave
    n = p.prompt_length
    assert p.input_ids[n:n + len(ids)] == ids
    assert all(lab == IGNORE for lab in p.labels[:n])
    assert p.labels[n:n + len(ids)] == ids and IGNORE not in p.labels[n:]
    assert tiny_tokenizer.convert_ids_to_tokens(p.input_ids[n + len(ids)]) == "<|im_end|>"
    assert len(p.input_ids) == len(p.labels) == len(p.attention_mask)
    # the rendered text tokenizes back to the same ids, and the target decodes to the chunk
    assert tiny_tokenizer(p.text, add_special_tokens=False)["input_ids"] == p.input_ids
    dec, ok = at.decode_with_status(p.input_ids[n:n + len(ids)], action_dim=7, horizon=5)
    assert ok and np.abs(dec - sample["chunk"]).max() <= 1 / 256 + 1e-9
    # inference: the generation prompt is exactly the training prefix
    g = pb.generation_prompt(sample["prompt"], sample["instruction"], state=sample["state"])
    assert g.input_ids == p.input_ids[:n] and g.text.endswith("<|im_start|>assistant\n")


def test_fast_tokens_in_the_prompt(sample, tiny_tokenizer):
    fast = FASTActionTokenizer(FASTTokenizer.fit(sample["chunks"]), tiny_tokenizer)
    pb = PromptBuilder(tiny_tokenizer)
    ids = fast.encode(sample["chunk"])
    p = pb.build(sample["prompt"], sample["instruction"], action_ids=ids)
    n = p.prompt_length
    assert "State:" not in p.text and len(ids) < 35
    assert p.input_ids[n:n + len(ids)] == ids
    dec, ok = fast.decode_with_status(p.input_ids[n:n + len(ids)], action_dim=7, horizon=5)
    assert ok and np.sqrt(((dec - sample["chunk"]) ** 2).mean()) < 0.05


def test_continuous_head_placeholder_is_not_a_label(sample, tiny_tokenizer):
    pb = PromptBuilder(tiny_tokenizer, placeholder_count=2)
    pid = pb.add_placeholder_token()
    p = pb.build(sample["prompt"], sample["instruction"], continuous=True)
    n = p.prompt_length
    assert p.input_ids[n:n + 2] == [pid, pid] and p.labels[n:n + 2] == [IGNORE, IGNORE]
    assert "<|action|><|action|>" in p.text
    with pytest.raises(ValueError, match="exactly one target"):
        pb.build(sample["prompt"], sample["instruction"])
    with pytest.raises(ValueError, match="exactly one target"):
        pb.build(sample["prompt"], sample["instruction"], action_ids=[1], action_text="stop")


def test_default_qwen_template_when_the_tokenizer_has_none(sample, tiny_tokenizer_no_template):
    assert not getattr(tiny_tokenizer_no_template, "chat_template", None)
    pb = PromptBuilder(tiny_tokenizer_no_template)
    p = pb.build(sample["prompt"], sample["instruction"], action_text="move forward 75 cm")
    assert p.text.count("<|im_start|>") == 3 and "<|im_start|>assistant\nmove forward 75 cm<|im_end|>" in p.text


def test_navigation_actions_as_text(tiny_tokenizer):
    emb = get_embodiment("nav_habitat_15deg")
    f, t = float(emb.extra["forward_m"]), np.radians(emb.extra["turn_deg"])
    # three forward steps, two left turns, one right turn, stop — nav.command rows as the VLN converters write them
    cmds = np.array([[f, 0, 0, 0]] * 3 + [[0, t, 0, 0]] * 2 + [[0, -t, 0, 0], [0, 0, 0, 1]])
    text = nav_commands_text(cmds)
    assert text == "move forward 75 cm, turn left 30 degrees, turn right 15 degrees, stop"
    np.testing.assert_allclose(parse_nav_text(text), [[0.75, 0, 0, 0], [0, np.radians(30), 0, 0],
                                                      [0, -t, 0, 0], [0, 0, 0, 1]], atol=1e-12)
    assert nav_commands_text(np.zeros((2, 4))) == "wait"
    a, b = ACTION.range("nav.command")
    row = np.zeros(ACTION.width)
    row[a:b] = [0, 0, np.radians(30), 0]
    assert nav_commands_text(row[a:b]) == "look up 30 degrees"
    p = PromptBuilder(tiny_tokenizer).build(emb.prompt(rate_hz=1), "walk past the sofa and stop at the door",
                                            action_text=text)
    n = p.prompt_length
    assert tiny_tokenizer.decode(p.input_ids[n:]).startswith(text)
    assert "Agent: Habitat VLN-CE agent" in p.text


def test_state_text_is_discretized(sample):
    txt = state_text(sample["state"])
    vals = [int(v) for v in txt.split()]
    assert len(vals) == int(np.sum(STATE.mask_for(["arm.eef_pos", "arm.eef_rot", "arm.gripper"])))
    assert all(0 <= v < 256 for v in vals)
