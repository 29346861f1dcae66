"""Open-X RLDS converter; ``synth`` writes synthetic RLDS datasets (sample data and tests)."""
from .converter import OpenXRLDSConverter, builtin_specs

__all__ = ["OpenXRLDSConverter", "builtin_specs"]
