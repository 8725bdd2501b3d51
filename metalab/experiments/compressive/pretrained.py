"""Pretrained Sketch- and Query-Networks at the regime where a learned sketch can beat a random one.

At ``d = 2`` a random quadratic sketch of ``m >= D(D+1)/2`` entries (``D = d + 1`` or ``d + 2``) holds
the exact second moments, so PCA and ridge decode exactly from it and a learned sketch cannot do
better.  The stored models sit where it cannot: ``d = 10`` with ``m`` well below ``D(D+1)/2`` for
PCA, ridge and the autoencoder (66 and 78 moments), and k-means with ``k = 5`` at ``m = 10 k d``.

:func:`train_compressive_models` meta-trains each task's model (:func:`metalab.compressive.training.meta_train`
as the experiment's :func:`~metalab.experiments.compressive.context.training_run` builds it from
:func:`compressive_model_config`), checkpointing every ``checkpoint_every`` steps so a stopped run
resumes, scores it on fixed held-out data sets against the random sketch and classical decoder of the
same size (:func:`evaluate_compressive_model`: medians of ``L(theta; D) / L(exact(D); D)``, also from
sketches released with differential privacy at each of ``config.epsilons``) and stores it with
:func:`metalab.pretrained.save`.  ``private=True`` meta-trains on private sketches instead
(``<name>_private``).  ``python -m metalab.pretrained.train compressive [--sketch-size m] [--private]``
runs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from metalab import pretrained
from metalab.compressive.ckm import MEDIAN_FACTOR
from metalab.compressive.feature_maps import median_scale
from metalab.compressive.query import CompressiveModel
from metalab.compressive.randomized import RandomizedLearner
from metalab.compressive.training import MetaTraining, evaluate
from metalab.core import collect
from metalab.core.device import torch_threads
from metalab.experiments.compressive import PAPER
from metalab.experiments.compressive.config import CompressiveConfig, family_of, held_out, task_of
from metalab.experiments.compressive.context import CompressiveContext, HeldOut, ModelKey, training_run
from metalab.experiments.compressive.parts import _privacy_records, example_units, random_relative_errors, summary

#: the tasks stored, in training order
STORED_TASKS = ("kmeans", "pca", "ridge", "autoencoder")
#: sketch size m of each stored task at d = 10: 10 k d for k-means (k = 5), well below D(D+1)/2 otherwise
SKETCH_SIZES = {"kmeans": 500, "pca": 20, "ridge": 20, "autoencoder": 20}
#: settings shared by every stored model (the rest are CompressiveConfig's defaults)
REGIME = {"d": 10, "clusters": 5, "components": 2, "width": 128, "eval_sets": 64, "eval_every": 500, "device": "cpu"}
#: samples per data set drawn from scikit-learn's tables
SKLEARN_SAMPLES = 100
#: held-out data sets the test re-scores (the first ones of the evaluation)
CHECK_SETS = 8

PAPER_CITATION = f"{PAPER.authors}, {PAPER.title}, {PAPER.venue} {PAPER.year} (arXiv {PAPER.arxiv})"


def compressive_model_config(
    task: str,
    *,
    sketch_size: int | None = None,
    family: str = "generated",
    steps: int = 3000,
    seed: int = 0,
    **overrides: Any,
) -> CompressiveConfig:
    """The config of ``task``'s stored model: :data:`REGIME`, m (default from :data:`SKETCH_SIZES`), ``steps``
    Adam steps on the generated family or on scikit-learn's tables (``family="sklearn"``: 100 samples per
    data set, since the held-out table, wine, has 178 rows)."""
    m = SKETCH_SIZES[task] if sketch_size is None else sketch_size
    settings = {**REGIME, "tasks": (task,), "sketch_size": m, "family": family, "steps": steps, "seed": seed}
    if family == "sklearn":
        settings |= {"n_samples": SKLEARN_SAMPLES, "held_out_samples": SKLEARN_SAMPLES}
    return CompressiveConfig(**{**settings, **overrides})


def model_name(config: CompressiveConfig, private: bool = False) -> str:
    """``compressive_<task>_d<d>_m<m>`` (``_sklearn``: on scikit-learn's tables; ``_private``: meta-trained on
    private sketches): the stored model's name."""
    tables = "_sklearn" if config.family == "sklearn" else ""
    return f"compressive_{config.tasks[0]}_d{config.d}_m{config.sketch_size}{tables}" + ("_private" if private else "")


def regenerate_command(config: CompressiveConfig, private: bool = False) -> str:
    return (
        f"python -m metalab.pretrained.train compressive --tasks {config.tasks[0]} --sketch-size {config.sketch_size} "
        f"--family {config.family} --steps {config.steps} --seed {config.seed}" + (" --private" if private else "")
    )


def _save_checkpoint(path: Path, run: MetaTraining, curve: list[list[float]]) -> None:
    """Write the run's state and its held-out curve so far atomically (a stop mid-write leaves the previous
    checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({**run.state_dict(), "curve": curve}, partial)
    os.replace(partial, path)


def train_compressive_model(
    config: CompressiveConfig,
    checkpoint: Path | None = None,
    checkpoint_every: int = 500,
    log: Callable[[str], None] = print,
    private: bool = False,
) -> tuple[CompressiveModel, dict[str, Any]]:
    """Meta-train the config's model to ``config.steps``, resuming from ``checkpoint`` when it exists;
    ``private``: on sketches released at budgets across ``config.private_epsilons``.

    Returns the model and a training summary (steps, seconds, last loss, held-out medians, status).
    """
    run = training_run(config, ModelKey(config.tasks[0], config.sketch_size, private))
    curve, status = [], "ok"
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        run.load_state_dict(state)
        curve = state["curve"]
        log(f"{model_name(config, private)}: resumed at step {run.done} from {checkpoint}")
    for progress in run:
        if progress.held_out is not None:
            curve.append([progress.step, progress.held_out])
            log(f"{model_name(config, private)}: step {progress.step}, held-out median {progress.held_out:.3f}")
        if checkpoint is not None and (progress.step % checkpoint_every == 0 or progress.step == config.steps):
            _save_checkpoint(checkpoint, run, curve)
        status = progress.status
    summary_ = {
        "steps": run.done,
        "seconds": round(run.seconds, 1),
        "status": status,
        "held_out_median_by_step": curve,
        "device": str(run.model.device),
        "torch_threads": torch.get_num_threads(),
    }
    return run.model, summary_


def data_scaled_ckm_errors(config: CompressiveConfig, scored: HeldOut) -> torch.Tensor:
    """k-means: relative errors of CL-OMPR on a Fourier sketch whose frequency scale is set from each data
    set's own median distance (``MEDIAN_FACTOR / median ||x - x'||``, as :func:`~metalab.compressive.ckm.rff_sketch_for_kmeans`
    does), where the experiment's random baseline uses one data-independent scale for the box."""
    task = task_of(config, "kmeans")
    errors = []
    for x in scored.data.X:
        scale = MEDIAN_FACTOR * median_scale(x, min(500, x.shape[0]), seed=config.seed)
        learner = RandomizedLearner(task, config.sketch_size, scale=scale, seed=config.seed)
        errors.append(learner.error(learner.predict(x[None]), x[None]))
    return torch.cat(errors) / scored.exact_errors


def evaluate_compressive_model(config: CompressiveConfig, model: CompressiveModel, sets: int) -> dict[str, Any]:
    """The learned model's and the random sketch's relative errors ``L(theta; D) / L(exact(D); D)`` on the
    first ``sets`` held-out data sets (seed ``config.seed + 1``, never trained on): medians and quartiles;
    for k-means also CL-OMPR with each data set's own frequency scale (:func:`data_scaled_ckm_errors`)."""
    task = config.tasks[0]
    scoring = config.replace(eval_sets=sets)
    data = held_out(scoring, task)
    scored = HeldOut(data, task_of(config, task).exact_error(data.X, data.y, seed=config.seed))
    learned = evaluate(model, data, reference=scored.exact_errors, seed=config.seed)
    random = random_relative_errors(scoring, task, config.sketch_size, scored)
    evaluation = {
        "sets": sets,
        "samples": data.X.shape[-2],
        "sketch_size": config.sketch_size,
        "learned": summary(learned),
        "random": summary(random),
        "learned_over_random": float(learned.median() / random.median()),
    }
    if task == "kmeans":
        evaluation["random_data_scale"] = summary(data_scaled_ckm_errors(config, scored))
    evaluation["privacy"] = privacy_evaluation(scoring, model, scored)
    return evaluation


def privacy_evaluation(config: CompressiveConfig, model: CompressiveModel, scored: HeldOut) -> list[dict[str, Any]]:
    """Median relative errors of ``model`` and of the random sketch decoded from sketches released by the
    config's mechanism at each of ``config.epsilons`` (seeded noise, as the experiment's 'privacy' part)."""
    task = config.tasks[0]
    context = CompressiveContext(config, held_out={task: scored})
    context.models[ModelKey(task, config.sketch_size, private=True)] = model  # the part scores this key's model
    rows: dict[float, dict[str, Any]] = {}
    for record in _privacy_records(config, context, task):
        row = rows.setdefault(record.step, {"epsilon": record.step, "mechanism": config.mechanism})
        row[record.method] = record.values["relative_error"]
    return list(rows.values())


def store_compressive_model(
    config: CompressiveConfig,
    model: CompressiveModel,
    training: dict[str, Any],
    directory: Path | None = None,
    private: bool = False,
) -> pretrained.ModelInfo:
    """Evaluate ``model`` (``config.eval_sets`` and :data:`CHECK_SETS` held-out sets) and store it as
    :func:`model_name` in :mod:`metalab.pretrained` (or in ``directory``)."""
    task = task_of(config, config.tasks[0])
    options = {name: getattr(task, name) for name in task.__dataclass_fields__ if name != "d"}
    return pretrained.save(
        model_name(config, private),
        model.state_dict(),
        config={
            "architecture": "compressive",
            "task": task.name,
            "d": config.d,
            "task_options": options,
            "sketch_size": config.sketch_size,
            "sketch_hidden": list(config.sketch_hidden),
            "sketch_activation": "relu",
            "width": config.width,
            "blocks": config.blocks,
            "private": private,
            "compressive_config": config.to_dict(),
        },
        description=f"Sketch- and Query-Network for {task.name}, d = {config.d}, m = {config.sketch_size} "
        f"({config.steps} meta-training steps on the {family_of(config, task.name).name} family"
        + (f", sketches released at epsilon in {config.private_epsilons})" if private else ")"),
        paper=PAPER_CITATION,
        training=training,
        evaluation={
            "test": evaluate_compressive_model(config, model, config.eval_sets),
            "check": evaluate_compressive_model(config, model, CHECK_SETS),
        },
        command=regenerate_command(config, private),
        directory=directory,
    )


def load_compressive_model(name: str) -> tuple[CompressiveConfig, CompressiveModel, pretrained.ModelInfo]:
    """A stored model with the config it was trained with and its stored info."""
    model, info = pretrained.load(name)
    return CompressiveConfig(**info.config["compressive_config"]), model, info


def train_compressive_models(
    configs: Iterable[CompressiveConfig],
    work_dir: Path | None = None,
    log: Callable[[str], None] = print,
    directory: Path | None = None,
    private: bool = False,
) -> list[pretrained.ModelInfo]:
    """Train (resuming from ``work_dir``'s checkpoints), evaluate and store one model per config (``private``:
    meta-trained on private sketches), with one torch thread."""
    infos = []
    with torch_threads(1):
        for config in configs:
            name = model_name(config, private)
            checkpoint = None if work_dir is None else Path(work_dir) / f"{name}.pt"
            model, training = train_compressive_model(config, checkpoint, log=log, private=private)
            infos.append(store_compressive_model(config, model, training, directory, private))
            log(f"{name}: stored {infos[-1].file}")
    return infos


def stored_sketch_sizes(task: str) -> list[int]:
    """The sketch sizes m of ``task``'s stored models on the generated family (not meta-trained privately)."""
    prefix = f"compressive_{task}_d{REGIME['d']}_m"
    names = (info.name for info in pretrained.available())
    return sorted(
        int(name.removeprefix(prefix)) for name in names if name.startswith(prefix) and name[len(prefix) :].isdigit()
    )


def stored_example(
    task: str, sketch_size: int | None = None, epsilon: float | None = None, samples: int = 250, seed: int = 0
) -> tuple[str, pd.DataFrame]:
    """The experiment's 'example' part on a stored model: one fresh held-out data set of ``samples`` samples
    (drawn from ``seed``) with the model's answer, the random sketch + classical decoder's and the exact one,
    each with its relative error ``L(theta; D) / L(exact(D); D)``.

    ``epsilon``: both sketches are released by the model's mechanism at that budget, and the ``_private``
    model answers when one is stored.  Returns the answering model's name and the example's records; a
    size with no stored model raises ValueError naming the stored ones.
    """
    sizes = stored_sketch_sizes(task)
    m = SKETCH_SIZES.get(task) if sketch_size is None else sketch_size
    if m not in sizes:
        raise ValueError(f"no stored {task!r} model with sketch size m = {m}; stored: {sizes or 'none'}")
    name = model_name(compressive_model_config(task, sketch_size=m))
    private = epsilon is not None and f"{name}_private" in {info.name for info in pretrained.available()}
    name += "_private" if private else ""
    config, model, _ = load_compressive_model(name)
    config = config.replace(
        parts=("example",), example_epsilon=epsilon, held_out_samples=samples, eval_sets=1, seed=seed, threads=1
    )
    context = CompressiveContext(config)
    context.models[ModelKey(task, m, private)] = model  # the part draws this key's model
    return name, collect(record for unit in example_units(config, context) for record in unit.work())
