"""Pieces every experiment shares: configs, the record stream, seeding, devices, memory, timing."""

from metalab.core.config import Config, ConfigError, Control, param, parse_assignments
from metalab.core.device import resolve_device
from metalab.core.memory import (
    SavedTensorMeter,
    cuda_peak_bytes,
    peak_rss_in_subprocess,
)
from metalab.core.records import Record, Unit, collect
from metalab.core.seeding import generator, seed_everything
from metalab.core.timing import Stopwatch

__all__ = [
    "Config",
    "ConfigError",
    "Control",
    "Record",
    "Unit",
    "SavedTensorMeter",
    "Stopwatch",
    "collect",
    "cuda_peak_bytes",
    "generator",
    "param",
    "parse_assignments",
    "peak_rss_in_subprocess",
    "resolve_device",
    "seed_everything",
]
