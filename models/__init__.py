"""Frozen models used by the data stages (vision encoders for feature precompute). Knows no Ray, no pipelines."""
from .vision_encoders import EncoderInfo, VisionEncoder, load_vision_encoder

__all__ = ["EncoderInfo", "VisionEncoder", "load_vision_encoder"]
