"""Data sets and task generators."""

from metalab.data.air_quality import AirQualityTasks, find_air_quality_dir, load_air_quality_tasks
from metalab.data.linear import LinearTasks, hps_tasks

__all__ = ["AirQualityTasks", "LinearTasks", "find_air_quality_dir", "hps_tasks", "load_air_quality_tasks"]
