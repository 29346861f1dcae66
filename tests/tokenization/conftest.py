"""Fixtures for the tokenization tests: the real Bridge fixture ingested once (with its statistics)
and a tiny Hugging Face tokenizer built here (no download)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def bridge_ingest(bridge_fixture, tmp_path_factory):
    """The real Open-X Bridge fixture through `vlaflow ingest`, and its statistics (in-process pass)."""
    from vlaflow.pipelines.ingest import IngestConfig, run_ingest
    from vlaflow.pipelines.stats import run_stats

    out = tmp_path_factory.mktemp("tok_bridge_out")
    result = run_ingest(IngestConfig("openx_rlds", str(bridge_fixture), str(out), executor="local"))
    assert result.ledger["episodes_out"] == 50
    return out, run_stats(str(out), executor="local").stats


@pytest.fixture(scope="session")
def bridge_rows(bridge_ingest) -> dict:
    """The step table's columns as NumPy, all shards in manifest order."""
    from vlaflow.schemas import ACTION, STATE

    out, _ = bridge_ingest
    cols = ["dataset", "embodiment", "embodiment_prompt", "episode_id", "instruction", "action", "action_mask",
            "action_valid", "state", "state_mask"]
    t = pq.read_table(sorted(str(p) for p in Path(out).glob("data/**/*.parquet")), columns=cols)
    fixed = lambda c, w: t[c].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, w)  # noqa: E731
    return {"action": fixed("action", ACTION.width), "action_mask": fixed("action_mask", ACTION.width),
            "state": fixed("state", STATE.width), "state_mask": fixed("state_mask", STATE.width),
            "action_valid": t["action_valid"].to_numpy(),
            **{c: np.asarray(t[c].to_pylist(), object) for c in ("dataset", "embodiment", "embodiment_prompt",
                                                                  "episode_id", "instruction")}}


def build_tiny_tokenizer(path: Path, corpus: list[str], chat_template: str | None = CHAT_TEMPLATE):
    """A byte-level BPE (a few hundred tokens) wrapped as a transformers fast tokenizer, saved to
    ``path`` and loaded back with ``from_pretrained`` — the way a real checkpoint's tokenizer loads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=specials[2:])
    if chat_template:
        tok.chat_template = chat_template
    tok.save_pretrained(str(path))
    return PreTrainedTokenizerFast.from_pretrained(str(path))


_CORPUS = [
    "Robot: WidowX 250, one 6-DoF arm with a parallel gripper. Action: end-effector position delta (m).",
    "Task: put the cup into the sink. State: 12 200 45 128", "move forward 75 cm, turn left 30 degrees, stop",
    "What action should the robot take to pick up the spoon?", "user assistant system",
] * 20


@pytest.fixture()
def tiny_tokenizer(tmp_path):
    """A fresh tiny tokenizer per test (tests add tokens to it)."""
    return build_tiny_tokenizer(tmp_path / "tiny_tok", _CORPUS)


@pytest.fixture()
def tiny_tokenizer_no_template(tmp_path):
    return build_tiny_tokenizer(tmp_path / "tiny_tok_plain", _CORPUS, chat_template=None)
