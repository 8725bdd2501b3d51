"""Data sets and task generators: generated defaults that need no download, and loaders for real data."""

from metalab.data.air_quality import (
    AirQualityTasks,
    find_air_quality_dir,
    load_air_quality_tasks,
)
from metalab.data.digit_pairs import DigitPairs, digit_pair_pools, digit_split_sizes, load_mnist, read_idx, split_digits
from metalab.data.episodes import (
    Episode,
    EpisodeBatch,
    EpisodeSampler,
    episode_samplers,
)
from metalab.data.glyphs import digit_classes, glyph_classes
from metalab.data.image_folders import ImageClasses, load_image_folder
from metalab.data.image_formats import (
    load_cifar_fs,
    load_fc100,
    load_mini_imagenet,
    load_tiered_imagenet,
)
from metalab.data.linear import LinearTasks, hps_tasks
from metalab.data.omniglot import (
    PUBLISHED_ONE_SHOT_ERRORS,
    OneShotResult,
    OneShotRun,
    evaluate_one_shot_runs,
    load_omniglot,
    load_one_shot_runs,
    pixel_nearest_neighbour,
)
from metalab.data.sinusoid import SinusoidBatch, SinusoidTasks

__all__ = [
    "PUBLISHED_ONE_SHOT_ERRORS",
    "AirQualityTasks",
    "DigitPairs",
    "Episode",
    "EpisodeBatch",
    "EpisodeSampler",
    "ImageClasses",
    "LinearTasks",
    "OneShotResult",
    "OneShotRun",
    "SinusoidBatch",
    "SinusoidTasks",
    "digit_classes",
    "digit_pair_pools",
    "digit_split_sizes",
    "episode_samplers",
    "evaluate_one_shot_runs",
    "find_air_quality_dir",
    "glyph_classes",
    "hps_tasks",
    "load_air_quality_tasks",
    "load_cifar_fs",
    "load_fc100",
    "load_image_folder",
    "load_mini_imagenet",
    "load_mnist",
    "load_omniglot",
    "load_one_shot_runs",
    "load_tiered_imagenet",
    "pixel_nearest_neighbour",
    "read_idx",
    "split_digits",
]
