"""Converter plugins. They see only ``vlaflow.schemas`` and ``vlaflow.media``; see ``base.Converter`` for the contract."""
from .base import Converter, ConverterOptions, ReadItem, Rejected, WorkUnit, option
from .registry import available, describe, load, sniff
from .units import file_units, pack_ranges, record_units

__all__ = ["Converter", "ConverterOptions", "ReadItem", "Rejected", "WorkUnit", "available",
           "describe", "file_units", "load", "option", "pack_ranges", "record_units", "sniff"]
