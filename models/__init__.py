"""Frozen models used by the data stages (vision encoders for feature precompute). Knows no Ray, no pipelines."""
from .vision_encoders import EncoderInfo, QwenVisualEncoder, VisionEncoder, describe_encoder, load_vision_encoder

__all__ = ["EncoderInfo", "QwenVisualEncoder", "VisionEncoder", "describe_encoder", "load_vision_encoder"]
