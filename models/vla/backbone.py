"""The language backbone: a Qwen-family decoder (``transformers``) fed with
``[state token] ‖ [vision tokens per camera] ‖ [chat-templated prompt tokens]``.

- ``backbone="tiny"``: a Qwen3 decoder built in code (hidden 64, 2 layers, 4 heads, 2 KV heads) over a
  byte-level BPE tokenizer trained here, deterministically, on the built-in embodiment prompts
  (``build_tiny_tokenizer``) — no download, and the tokenizer is saved with every checkpoint;
- any other value is a local folder (or a Hub id already in the local cache) loaded with
  ``AutoModelForCausalLM.from_pretrained(..., local_files_only=True)`` — Qwen3-0.6B/1.7B, Qwen2.5-1.5B, …;
- ``backbone_layers=N`` keeps the first N decoder layers (GR00T's ``select_layer``); ``freeze_backbone``
  freezes the language model (embeddings, layers, norm, LM head); the vision/state projectors stay trainable;
- the flow head reads the last hidden states and never computes vocabulary logits; the discrete head and
  VL rows apply the LM head only at positions that have a label.

The state token comes first so that every query position (a padded or missing camera included) has at
least one key it may attend to under the causal mask — no all-masked attention row, no NaN.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import VLAConfig

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, tie_word_embeddings=True, max_position_embeddings=4096)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_SPECIALS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_VOCAB = 1024
_WORDS = ("pick place put move push pull open close the a an of to on in into from with and up down left right "
          "forward backward turn stop go walk cup bowl plate block cube drawer door lid towel spoon fork knife "
          "pot pan sink table shelf box bottle can apple banana carrot red green blue yellow white black top "
          "bottom middle front back side near far handle button knob stack fold wipe pour grasp lift lower "
          "rotate slide insert remove take it them object robot hand arm gripper kitchen room hallway stairs "
          "Task: State: system user assistant 0 1 2 3 4 5 6 7 8 9 cm degrees")


def tiny_tokenizer_corpus() -> list[str]:
    from vlaflow.schemas import EmbodimentRegistry

    reg = EmbodimentRegistry.builtin()
    prompts = [reg.get(e).prompt() for e in reg.ids()]
    return prompts + [_WORDS] * 4 + [f"Task: {w}" for w in _WORDS.split()]


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB):
    """A byte-level BPE as a transformers fast tokenizer with a Qwen chat template (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=TINY_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(tiny_tokenizer_corpus(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=TINY_SPECIALS[2:])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def load_tokenizer(config: VLAConfig, folder: str | Path | None = None):
    """The tokenizer a config names (a checkpoint's own ``tokenizer/`` folder wins), with the discrete
    head's action tokens added. Deterministic: two calls give the same ids."""
    from transformers import AutoTokenizer

    if folder is not None:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    elif config.tokenizer:
        tok = AutoTokenizer.from_pretrained(config.tokenizer, local_files_only=True)
    elif config.backbone == "tiny":
        tok = build_tiny_tokenizer()
    else:
        tok = AutoTokenizer.from_pretrained(config.backbone, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if config.head == "discrete":
        action_tokenizer(config, tok)  # reserves the action ids (idempotent) before any LM is sized
    return tok


def action_tokenizer(config: VLAConfig, tokenizer):
    """The discrete head's action tokenizer, its ids reserved in ``tokenizer`` (idempotent)."""
    if config.discrete_tokenizer == "fast":
        from vlaflow.tokenization.tokenizers.fast import FASTActionTokenizer, FASTTokenizer

        return FASTActionTokenizer(FASTTokenizer.load(config.fast_tokenizer), tokenizer)
    from vlaflow.tokenization.tokenizers.bins import BinActionTokenizer

    return BinActionTokenizer(tokenizer, config.discrete_bins)


def _cache_kwarg(model: nn.Module) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _truncate(lm: nn.Module, n: int | None) -> None:
    if n is None:
        return
    layers = lm.model.layers
    if n > len(layers):
        raise ValueError(f"backbone_layers={n} but the backbone has only {len(layers)} decoder layers")
    lm.model.layers = nn.ModuleList(list(layers)[:n])
    lm.config.num_hidden_layers = n
    if getattr(lm.config, "layer_types", None):
        lm.config.layer_types = list(lm.config.layer_types)[:n]


def build_language_model(config: VLAConfig, tokenizer, lm_config=None) -> nn.Module:
    """The causal LM: from ``lm_config`` (a saved checkpoint: weights loaded later), the tiny config, or a
    pretrained folder. Truncated to ``backbone_layers``; embeddings cover the tokenizer."""
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    if lm_config is not None:
        lm = AutoModelForCausalLM.from_config(lm_config)
    elif config.backbone == "tiny":
        try:
            from transformers import Qwen3Config as Cfg
        except ImportError:  # older transformers: the Qwen2 architecture
            from transformers import Qwen2Config as Cfg
        lm = AutoModelForCausalLM.from_config(Cfg(vocab_size=len(tokenizer), **TINY,
                                                  pad_token_id=tokenizer.pad_token_id))
    else:
        try:
            lm = AutoModelForCausalLM.from_pretrained(config.backbone, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as err:
            raise ValueError(f"backbone {config.backbone!r}: cannot load it offline "
                             f"({str(err).splitlines()[0][:160]})") from None
    if not hasattr(lm, "model") or not hasattr(lm.model, "layers"):
        raise ValueError(f"backbone {config.backbone!r}: expected a decoder-only LM with model.layers "
                         f"(Qwen2/Qwen3 family), got {type(lm).__name__}")
    _truncate(lm, config.backbone_layers if lm_config is None else None)
    lm.to(getattr(torch, config.backbone_dtype))
    if lm.get_input_embeddings().num_embeddings < len(tokenizer):
        lm.resize_token_embeddings(len(tokenizer))
    return lm


class Backbone(nn.Module):
    """LM + projectors. ``forward`` → (hidden [B, S, D], mask [B, S], prefix length P)."""

    def __init__(self, config: VLAConfig, tokenizer, lm_config=None):
        super().__init__()
        self.config = config
        self.lm = build_language_model(config, tokenizer, lm_config)
        d = self.hidden_size
        self.state_proj = nn.Linear(2 * config.state_dim, d)
        if config.vision != "none":
            self.vision_proj = nn.Sequential(nn.Linear(config.vision_dim, d), nn.GELU(), nn.Linear(d, d))
            self.camera_embed = nn.Embedding(len(config.cameras), d)
            nn.init.normal_(self.camera_embed.weight, std=0.02)
        if config.freeze_backbone:
            self.lm.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return int(self.lm.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return len(self.lm.model.layers)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_backbone:
            self.lm.eval()  # a frozen LM keeps eval behaviour (dropout off)
        return self

    def prefix(self, state, state_mask, vision=None, vision_mask=None):
        """[B, P, D] prefix embeddings and [B, P] mask: the state token, then the vision tokens."""
        dtype = self.state_proj.weight.dtype
        sm = state_mask.bool()
        s_in = torch.cat([torch.where(sm, state.to(dtype), torch.zeros((), dtype=dtype, device=state.device)),
                          sm.to(dtype)], dim=-1)
        if not self.config.state_in_backbone:
            s_in = torch.zeros_like(s_in)
        parts = [self.state_proj(s_in)[:, None]]
        masks = [torch.ones(state.shape[0], 1, dtype=torch.bool, device=state.device)]
        if self.config.vision != "none" and vision is not None and vision.shape[1]:
            b, c, k, _ = vision.shape
            vm = vision_mask.bool()
            v = torch.where(vm[:, :, None, None], vision.to(dtype), torch.zeros((), dtype=dtype, device=vision.device))
            v = self.vision_proj(v) + self.camera_embed.weight[:c][None, :, None]
            parts.append(v.reshape(b, c * k, -1))
            masks.append(vm[:, :, None].expand(b, c, k).reshape(b, c * k))
        return torch.cat(parts, 1), torch.cat(masks, 1)

    def forward(self, input_ids, attention_mask, state, state_mask, vision=None, vision_mask=None,
                past_key_values=None):
        pre, pre_mask = self.prefix(state, state_mask, vision, vision_mask)
        emb = self.lm.get_input_embeddings()
        embeds = torch.cat([pre.to(emb.weight.dtype), emb(input_ids)], 1)
        mask = torch.cat([pre_mask, attention_mask.bool()], 1)
        last, cache = self.run(embeds, mask.long(), past_key_values)
        hidden = torch.where(mask[..., None], last.to(pre.dtype), torch.zeros((), dtype=pre.dtype, device=pre.device))
        return hidden, mask, pre.shape[1], cache

    def run(self, embeds: torch.Tensor, attention_mask: torch.Tensor, cache=None):
        """The decoder on embeddings → (last hidden states, cache). ``cache`` (a transformers Cache) is filled
        in place when given (transformers 5 names the argument ``cache``, 4.x ``past_key_values``)."""
        kw = {_cache_kwarg(self.lm.model): cache} if cache is not None else {}
        out = self.lm.model(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=cache is not None, **kw)
        return out.last_hidden_state, cache

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        head = self.lm.get_output_embeddings()
        return head(hidden.to(head.weight.dtype))
