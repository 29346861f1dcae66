"""Simulation-log converters: robomimic / robosuite raw, LIBERO, RoboTwin, ManiSkill.

Each is a plugin (entry-point group ``vlaflow.converters``) whose ``sniff`` claims exactly the
layouts it reads, so ``--converter auto`` picks one. Per-dataset slot mappings are YAML specs in
``specs/``; conventions and their normalization are documented in ``docs/sim.md``.
"""
from .libero import LiberoConverter
from .maniskill import ManiSkillConverter
from .robomimic import RobomimicConverter
from .robotwin import RoboTwinConverter

__all__ = ["RobomimicConverter", "LiberoConverter", "RoboTwinConverter", "ManiSkillConverter"]
