"""``VLAProcessor``: the collate from feed samples (numpy, normalized) to model tensors.

Per sample it renders the chat prompt with ``tokenization/prompts.py`` (system = embodiment prompt,
user = "Task: …"; the flow head uses the generation prompt — it ends with the assistant header — and
the discrete head appends the action tokens as the assistant turn with labels), then pads and stacks.
It holds only the tokenizer and small tables, so it pickles cheaply into Ray Data workers.

Batch keys: ``input_ids, attention_mask, labels, vision, vision_mask, state, state_mask, target,
target_mask, embodiment_id, family_id`` (+ ``pixel_values`` for ``vision="encoder"``). ``labels`` is
always present (-100 everywhere for flow-head action rows) so every batch has the same keys.

Discrete targets: the chunk's *own* dimensions are the positions whose mask is True at any step (time-
major order: every own value of step 0, then step 1, …). Bins give one token per (step, own dim) and the
label of a (step, dim) the mask marks False is -100 (the token stays in the input, it just is not
learned); FAST encodes the [H, own dims] chunk (masked entries 0) as a whole.

Vision-language rows (a ``conversation``, no action) go through ``tokenization.prompts.render_conversation``:
labels on the assistant turns, ``<image>`` markers dropped (the cameras are the backbone's prefix), cut to
``max_conversation_tokens``.
"""
from __future__ import annotations

import numpy as np
import torch

from vlaflow.tokenization.prompts import IGNORE, PromptBuilder, render_conversation

from .backbone import action_tokenizer
from .config import FAMILIES, VLAConfig


def own_dims(target_mask: np.ndarray) -> np.ndarray:
    """Indices of the action dims a chunk supervises at any step."""
    return np.flatnonzero(np.asarray(target_mask, bool).any(0))


class VLAProcessor:
    def __init__(self, config: VLAConfig, tokenizer=None):
        if tokenizer is None:
            from .backbone import load_tokenizer

            tokenizer = load_tokenizer(config)
        self.config, self.tokenizer = config, tokenizer
        self.prompts = PromptBuilder(tokenizer)
        self.actions = action_tokenizer(config, tokenizer) if config.head == "discrete" else None
        self.pad_id = int(tokenizer.pad_token_id)
        self._cache: dict = {}

    def __getstate__(self):  # ships to Ray workers without its cache
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def _prompt_parts(self, system: str, instruction: str, target: bool) -> tuple[list[int], list[int]]:
        """(prefix ids, suffix ids) of a prompt, cached: every step of an episode shares its prompt, and the
        chat template + tokenizer are most of the collate's cost. The prefix ends with the assistant header;
        the suffix (the end of turn) follows the action tokens when there is a target."""
        key = (system, instruction, target)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= 8192:
                self._cache.clear()
            if target:
                p = self.prompts.build(system, instruction, action_ids=[])
                hit = (list(p.input_ids[: p.prompt_length]), list(p.input_ids[p.prompt_length:]))
            else:
                hit = (list(self.prompts.generation_prompt(system, instruction).input_ids), [])
            self._cache[key] = hit
        return hit

    # ------------------------------------------------------------------ one sample
    def _truncate(self, ids: list[int], labels: list[int], prompt_len: int) -> tuple[list[int], list[int]]:
        """Keep the prompt within ``max_prompt_tokens`` (its head and its last 8 tokens); the target stays."""
        limit = self.config.max_prompt_tokens
        if prompt_len <= limit:
            return ids, labels
        keep_tail = min(8, limit // 2)
        cut = list(range(limit - keep_tail)) + list(range(prompt_len - keep_tail, len(ids)))
        return [ids[i] for i in cut], [labels[i] for i in cut]

    def encode_prompt(self, sample: dict, *, with_target: bool) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of one sample; ``with_target`` adds the discrete action tokens."""
        system, instruction = sample.get("embodiment_prompt") or "", sample.get("instruction") or ""
        if sample.get("conversation"):  # a vision-language row (issue 17): labels on the assistant turns
            p = render_conversation(self.tokenizer, system, list(sample["conversation"]),
                                    chat_template=self.prompts.template,
                                    max_length=self.config.max_conversation_tokens)
            return list(p.input_ids), list(p.labels)
        if self.config.head == "discrete" and with_target:
            mask = np.asarray(sample["target_mask"], bool)
            dims = own_dims(mask)
            chunk = np.asarray(sample["target"], np.float32)[:, dims] * mask[:, dims]
            ids = [int(i) for i in self.actions.encode(chunk)]
            prefix, suffix = self._prompt_parts(system, instruction, True)
            target_labels = list(ids)
            if self.config.discrete_tokenizer == "bins":  # a masked (step, dim) is in the input, not a label
                for j, ok in enumerate(mask[:, dims].ravel()):
                    if not ok:
                        target_labels[j] = IGNORE
            return self._truncate(prefix + ids + suffix, [IGNORE] * len(prefix) + target_labels + suffix,
                                  len(prefix))
        prefix, _ = self._prompt_parts(system, instruction, False)
        return self._truncate(list(prefix), [IGNORE] * len(prefix), len(prefix))

    # ------------------------------------------------------------------ the collate
    def __call__(self, samples: list[dict], with_target: bool = True) -> dict[str, torch.Tensor]:
        cfg = self.config
        if not samples:
            raise ValueError("VLAProcessor got an empty batch")
        b, h, a = len(samples), cfg.horizon, cfg.action_dim
        encoded = [self.encode_prompt(s, with_target=with_target) for s in samples]
        length = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((b, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((b, length), dtype=torch.long)
        labels = torch.full((b, length), IGNORE, dtype=torch.long)
        for i, (ids, lab) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
            labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.long)

        state = np.zeros((b, cfg.state_dim), np.float32)
        state_mask = np.zeros((b, cfg.state_dim), bool)
        target = np.zeros((b, h, a), np.float32)
        target_mask = np.zeros((b, h, a), bool)
        n_cam = len(cfg.cameras) if cfg.vision != "none" else 0
        vision = np.zeros((b, n_cam, cfg.vision_tokens, cfg.vision_dim), np.float32)
        vision_mask = np.zeros((b, n_cam), bool)
        for i, s in enumerate(samples):
            if s.get("state") is not None:
                state[i] = _fit(np.asarray(s["state"], np.float32), cfg.state_dim, "state")
                state_mask[i] = _fit(np.asarray(s["state_mask"], bool), cfg.state_dim, "state_mask")
            if s.get("target") is not None:
                target[i] = _fit2(np.asarray(s["target"], np.float32), (h, a), "target")
                target_mask[i] = _fit2(np.asarray(s["target_mask"], bool), (h, a), "target_mask")
            if n_cam and cfg.vision == "features" and s.get("vision") is not None:
                v = np.asarray(s["vision"], np.float32)
                if v.ndim == 2:  # [n_cameras, D]: pooled features
                    v = v[:, None]
                if v.shape[1:] != (cfg.vision_tokens, cfg.vision_dim) or v.shape[0] != n_cam:
                    raise ValueError(f"vision features of shape {v.shape} do not match the model "
                                     f"({n_cam} cameras, {cfg.vision_tokens} tokens, dim {cfg.vision_dim}); "
                                     "compute features with the encoder and --tokens the model was built for")
                vision[i] = v
                vision_mask[i] = np.asarray(s.get("vision_mask", np.ones(n_cam, bool)), bool)
        # padded values are zeroed here too, so nothing of them can travel further
        state = np.where(state_mask, state, 0).astype(np.float32)
        target = np.where(target_mask, target, 0).astype(np.float32)
        vision = np.where(vision_mask[:, :, None, None], vision, 0).astype(np.float32)
        batch = {
            "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "vision": torch.from_numpy(vision), "vision_mask": torch.from_numpy(vision_mask),
            "state": torch.from_numpy(state), "state_mask": torch.from_numpy(state_mask),
            "target": torch.from_numpy(target), "target_mask": torch.from_numpy(target_mask),
            "embodiment_id": torch.tensor([self._embodiment_id(s) for s in samples], dtype=torch.long),
            "family_id": torch.tensor([family_id(s) for s in samples], dtype=torch.long),
        }
        if cfg.vision == "encoder":
            batch["pixel_values"], batch["vision_mask"] = self._pixels(samples)
        return batch

    def _embodiment_id(self, sample: dict) -> int:
        """Index of the row's embodiment in ``config.embodiments``. A vision-language row (a conversation, no
        action target: ``embodiment = "no_body"``) needs no per-embodiment layer and gets 0 when its
        embodiment is not listed; any other unknown embodiment is an error."""
        name = sample.get("embodiment", "")
        if self.config.embodiments and name not in self.config.embodiments and sample.get("conversation") \
                and not np.asarray(sample.get("target_mask", False)).any():
            return 0
        return self.config.embodiment_id(name)

    def _pixels(self, samples: list[dict]):
        """Raw frames (bytes or HxWx3 uint8, per camera) → the encoder's own preprocessing."""
        from vlaflow.models.vla.vision import decode_frames

        return decode_frames(self.config, samples)


def family_id(sample: dict) -> int:
    fam = sample.get("task_family") or ("vision_language" if sample.get("conversation") else "manipulation")
    try:
        return FAMILIES.index(fam)
    except ValueError:
        raise ValueError(f"unknown task family {fam!r}; one of {', '.join(FAMILIES)}") from None


def _fit(x: np.ndarray, width: int, name: str) -> np.ndarray:
    if x.shape != (width,):
        raise ValueError(f"{name} has shape {x.shape}, the model expects ({width},)")
    return x


def _fit2(x: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """[T, A] target → [H, A]: a shorter chunk is padded (masked), a longer one cut to the horizon."""
    if x.ndim != 2 or x.shape[1] != shape[1]:
        raise ValueError(f"{name} has shape {x.shape}, the model expects (horizon, {shape[1]})")
    out = np.zeros(shape, x.dtype)
    n = min(shape[0], x.shape[0])
    out[:n] = x[:n]
    return out
