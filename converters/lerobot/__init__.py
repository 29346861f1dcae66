"""LeRobot datasets (v3.0 and v2.x) in: the ``lerobot`` converter plugin."""
from .converter import LeRobotConverter

__all__ = ["LeRobotConverter"]
