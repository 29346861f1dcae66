"""What a training sample is cut from and which dataset it is drawn from.

- ``chunks``: ``[T, D]`` action windows of valid steps inside episodes
- ``mixtures``: dataset-mixture presets resolved against a corpus catalog, and a seeded sampler
"""
