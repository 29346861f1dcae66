"""The reference VLA: a Qwen-family backbone + a DiT flow-matching action head (or action tokens in
the LM vocabulary). Plain torch/transformers; no Ray, no data loading. See docs/model.md."""
from .backbone import build_tiny_tokenizer, load_tokenizer
from .config import FAMILIES, ConfigError, VLAConfig
from .model import VLAModel
from .policy import Policy, PolicyError, load_policy
from .processor import VLAProcessor

__all__ = ["FAMILIES", "ConfigError", "Policy", "PolicyError", "VLAConfig", "VLAModel", "VLAProcessor",
           "build_tiny_tokenizer", "load_policy", "load_tokenizer"]
