"""Frames in and out, for every converter and stage: video clocks, sampling, decoders and clip encoding
(``video``), image encoding and orientation (``images``), the ``--opt storage`` choice (``storage``), shard
MP4 assembly (``shard_videos``), reading frames back from any filesystem (``reader``). Sees only ``schemas``."""
from .fs import resolve
from .images import FORMATS, check_encoded, decode_rgb, encode_frames, encode_image, orient
from .reader import FrameReader
from .shard_videos import ShardVideos
from .storage import STORAGE_OPTION_KEYS, STORAGES, FrameStorage
from .video import (CODECS, DECODERS, ClipEncoder, DecordDecoder, PyAVDecoder, UndecodableVideo, VideoIndex,
                    nearest_frames, open_decoder, probe, sample_indices)

__all__ = ["CODECS", "DECODERS", "FORMATS", "STORAGES", "STORAGE_OPTION_KEYS", "ClipEncoder", "DecordDecoder",
           "FrameReader", "FrameStorage", "PyAVDecoder", "ShardVideos", "UndecodableVideo", "VideoIndex",
           "check_encoded", "decode_rgb", "encode_frames", "encode_image", "nearest_frames",
           "open_decoder", "orient", "probe", "resolve", "sample_indices"]
