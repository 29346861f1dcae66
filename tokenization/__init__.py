"""Action tokenizers and prompts, and what feeds them: statistics, normalization, chunks, mixtures.

Sees only ``vlaflow.schemas`` (a test enforces it), so it runs in a data loader without Ray.

- ``tokenizers/``: uniform-bin (``bins``) and FAST (``fast``) action tokenizers over a Hugging Face tokenizer
- ``prompts``: chat-template prompts (embodiment prompt + instruction + action target)
- ``statistics/``: mergeable per-slot moments and KLL sketches (``meta/stats.json``), saved partials
- ``normalization``: z-score / bounds / quantile normalization with exact inverses
- ``sampling/``: action chunks cut inside episodes (``chunks``), dataset mixtures (``mixtures``)
"""
