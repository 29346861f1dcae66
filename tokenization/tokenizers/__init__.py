"""Action tokenizers into a Hugging Face tokenizer's vocabulary.

- ``bins``: ``UniformBins``, ``ReservedIds``, ``BinActionTokenizer``
- ``fast``: ``FASTTokenizer`` (DCT + BPE) and ``FASTActionTokenizer``
"""
