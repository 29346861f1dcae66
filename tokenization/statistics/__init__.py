"""Mergeable per-slot statistics behind ``meta/stats.json`` (docs/stats.md).

- ``spec``: ``StatsSpec`` (what gets statistics, sketch size), the reported quantiles, ``STATS_VERSION``
- ``moments``: count, mean, M2, min, max per position, merged with Chan et al.'s update
- ``kll``: the KLL quantile sketch, and its exact packing into plain arrays
- ``accumulator``: per-(dataset, embodiment) groups, the stats document, partials saved as ``.npz``
"""
