"""Vision-language converters (task family ``vision_language``): LLaVA-style conversation JSON/JSONL with an image
folder (``llava``), and Parquet / ``datasets`` tables with an image column (``vl_table``)."""
from .llava import LLaVAConverter
from .table import VLTableConverter

__all__ = ["LLaVAConverter", "VLTableConverter"]
