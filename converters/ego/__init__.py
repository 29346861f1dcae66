"""Egocentric and generic video converters: EPIC-KITCHENS-style segments (``epic_kitchens``), EgoDex-style hand
poses + video (``egodex``), and any video + point-track file (``video_trajectory``)."""
from .egodex import EgoDexConverter
from .epic import EpicKitchensConverter
from .video_trajectory import VideoTrajectoryConverter

__all__ = ["EgoDexConverter", "EpicKitchensConverter", "VideoTrajectoryConverter"]
