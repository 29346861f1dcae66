"""``VLAConfig``: every knob of the VLA model in one JSON-round-trippable dataclass (saved as config.json)."""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vlaflow.schemas import ACTION, STATE, TASK_FAMILIES, TRAJECTORY

VISION_MODES = ("features", "encoder", "none")
HEADS = ("flow", "discrete")
DISCRETE_TOKENIZERS = ("bins", "fast")
# Loss names and family ids: the corpus' task families, then vision-language rows (issue 17).
FAMILIES = tuple(TASK_FAMILIES) + ("vision_language",)


class ConfigError(ValueError):
    """A bad model config: one line naming the key."""


@dataclass
class VLAConfig:
    backbone: str = "tiny"
    backbone_layers: int | None = None
    freeze_backbone: bool = False
    tokenizer: str | None = None
    vision: str = "features"
    vision_encoder: str | None = None
    vision_dim: int = 768
    vision_tokens: int = 1
    cameras: tuple[str, ...] = ("primary",)
    head: str = "flow"
    horizon: int = 8
    action_dim: int = ACTION.width + TRAJECTORY.width
    state_dim: int = STATE.width
    embodiments: tuple[str, ...] = ()
    dit_layers: int = 4
    dit_heads: int = 4
    dit_head_dim: int = 32
    dit_hidden: int = 128
    num_inference_steps: int = 4
    time_beta: tuple[float, float] = (1.5, 1.0)
    t_repeat: int = 1
    normalization: str = "quantile"
    discrete_tokenizer: str = "bins"
    # -- beyond the contract (defaults keep the contract's behaviour) --
    discrete_bins: int = 256           # bins head: uniform bins over [-1, 1]
    fast_tokenizer: str | None = None  # fast head: folder of a fitted FASTTokenizer (tokenization/tokenizers/fast.py)
    max_prompt_tokens: int = 256       # prompts are truncated to this many text tokens (head and tail kept)
    max_conversation_tokens: int = 1024  # VL conversations are cut (right) to this many tokens
    state_in_backbone: bool = True     # also splice a state token into the backbone's input (the DiT always gets it)
    dit_dropout: float = 0.0
    dit_alternate_vl: bool = False     # GR00T N1.6+ AlternateVLDiT: cross blocks alternate text / image tokens
    state_dropout: float = 0.0         # GR00T N1.7 uses 0.8: drop a row's state features in training
    time_scale: float = 0.999          # t = (1 - Beta(a, b)) * time_scale  (GR00T N1.7)
    backbone_dtype: str = "float32"    # the LM's weights: float32 | bfloat16 | float16 (projectors/head stay fp32)
    extra: dict = field(default_factory=dict)  # free-form (run metadata); saved as is

    def __post_init__(self):
        self.cameras = tuple(self.cameras)
        self.embodiments = tuple(self.embodiments)
        self.time_beta = tuple(float(x) for x in self.time_beta)
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, key: str, problem: str):
            if not ok:
                raise ConfigError(f"model config: {key}: {problem}")

        need(self.vision in VISION_MODES, "vision", f"{self.vision!r} is not one of {', '.join(VISION_MODES)}")
        need(self.head in HEADS, "head", f"{self.head!r} is not one of {', '.join(HEADS)}")
        need(self.discrete_tokenizer in DISCRETE_TOKENIZERS, "discrete_tokenizer",
             f"{self.discrete_tokenizer!r} is not one of {', '.join(DISCRETE_TOKENIZERS)}")
        for key in ("horizon", "action_dim", "state_dim", "dit_layers", "dit_heads", "dit_head_dim", "dit_hidden",
                    "num_inference_steps", "t_repeat", "vision_dim", "vision_tokens", "discrete_bins",
                    "max_prompt_tokens", "max_conversation_tokens"):
            v = getattr(self, key)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, key, f"expected an integer >= 1, got {v!r}")
        need(self.backbone_layers is None or (isinstance(self.backbone_layers, int) and self.backbone_layers >= 1),
             "backbone_layers", f"expected null or an integer >= 1, got {self.backbone_layers!r}")
        need(len(self.time_beta) == 2 and min(self.time_beta) > 0, "time_beta",
             f"expected two positive numbers, got {self.time_beta!r}")
        need(0 <= self.state_dropout < 1 and 0 <= self.dit_dropout < 1, "state_dropout",
             "state_dropout and dit_dropout must lie in [0, 1)")
        need(0 < self.time_scale <= 1, "time_scale", f"expected 0 < time_scale <= 1, got {self.time_scale!r}")
        need(len(set(self.embodiments)) == len(self.embodiments), "embodiments", "an embodiment is listed twice")
        need(len(set(self.cameras)) == len(self.cameras), "cameras", "a camera role is listed twice")
        need(not (self.vision == "encoder" and not self.vision_encoder), "vision_encoder",
             "vision='encoder' needs vision_encoder (a local folder or cached Hub id)")
        need(not (self.head == "discrete" and self.freeze_backbone), "freeze_backbone",
             "the discrete head predicts tokens with the backbone itself, so it cannot be frozen")
        need(not (self.head == "discrete" and self.discrete_tokenizer == "fast" and not self.fast_tokenizer),
             "fast_tokenizer", "discrete_tokenizer='fast' needs fast_tokenizer (a fitted FASTTokenizer folder)")
        need(self.backbone_dtype in ("float32", "bfloat16", "float16"), "backbone_dtype",
             f"{self.backbone_dtype!r} is not one of float32, bfloat16, float16")
        need(self.normalization in ("zscore", "bounds", "quantile", "none"), "normalization",
             f"{self.normalization!r} is not one of zscore, bounds, quantile, none")

    # ------------------------------------------------------------------ json
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VLAConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"model config: expected a mapping of keys, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for k in d:
            if k not in known:
                near = difflib.get_close_matches(k, known, n=1)
                raise ConfigError(f"model config: {k}: unknown key" + (f" (did you mean {near[0]!r}?)" if near else ""))
        try:
            return cls(**d)
        except TypeError as err:
            raise ConfigError(f"model config: {err}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "VLAConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None

    @property
    def action_width(self) -> int:
        """Positions of ``target`` that belong to the action layout (the rest is trajectory)."""
        return min(ACTION.width, self.action_dim)

    @property
    def num_embodiments(self) -> int:
        """Categories of the per-embodiment layers (one shared category when none are named)."""
        return max(1, len(self.embodiments))

    def embodiment_id(self, name: str) -> int:
        if not self.embodiments:
            return 0
        try:
            return self.embodiments.index(name)
        except ValueError:
            raise KeyError(f"embodiment {name!r} is not one this model was built for "
                           f"(known: {', '.join(self.embodiments)})") from None
