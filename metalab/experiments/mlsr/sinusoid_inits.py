"""MAML, MLSR and MAML-FZ (ANIL) sinusoid initialisations meta-trained at the MAML paper's scale, their
evaluation against Finn et al. 2017, Table 2, and the claim table the stored evaluation feeds.

The setting is MAML's sinusoid regression: y = A sin(x − φ), A ∈ [0.1, 5], φ ∈ [0, π], x ∈ [−5, 5];
a 1-40-40-1 ReLU network; one inner step of size α = 0.01 on K support points; meta-batches of 25
tasks; Adam at 1e-3.  The paper trained for 70,000 meta-iterations; each stored model's training
summary says how many it had (Adam has no schedule, so a run resumed to more iterations is the
same as a longer run).  Training writes a checkpoint every ``checkpoint_every`` iterations (the parameters, Adam's
state and the iteration), so a stopped run resumes where it stopped and repeats the same meta-batches.

The evaluation is the published protocol: 5-shot test tasks, each scored by the mean squared error
on ``eval_query`` query points after 1, 5 and 10 test-time steps (each method adapting as it
trained, :func:`metalab.experiments.mlsr.models.adapt_predictions`), averaged over a fixed set of
test tasks.  :func:`train_sinusoid_inits` is what ``metalab reproduce`` and ``python -m
metalab.pretrained.train sinusoid`` call; it stores each model with :func:`metalab.pretrained.save`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from metalab import pretrained
from metalab.core.device import torch_threads
from metalab.experiments.mlsr.claims import maml_sinusoid_row, mlsr_sinusoid_row
from metalab.experiments.mlsr.config import MLSRConfig
from metalab.experiments.mlsr.models import (
    Trained,
    ci95,
    make_learner,
    make_net,
    make_sampler,
    model_spec,
    network_sizes,
)
from metalab.experiments.mlsr.supervised import sinusoid_test_mse
from metalab.nets import param_dict

#: the methods whose initialisations are stored (MAML-FZ is ANIL)
INIT_METHODS = ("maml", "mlsr", "maml_fz")
#: test-time steps of the published table
REPORTED_STEPS = (1, 5, 10)
#: test tasks of the stored evaluation, and of the quick check a test repeats
EVAL_TASKS, CHECK_TASKS = 600, 100
PAPER_CITATION = "Finn, Abbeel & Levine 2017 (MAML), Table 2; Lou, Zhao & Wang 2021 (MLSR), Figure 3"
METHOD_NAMES = {"maml": "MAML", "mlsr": "MLSR", "maml_fz": "MAML-FZ (ANIL)"}


def sinusoid_init_config(shots: int = 10, iterations: int = 30_000, seed: int = 0) -> MLSRConfig:
    """The MAML paper's sinusoid setting: K = ``shots`` support (and query) points in meta-training, one
    inner step of 0.01, 1-40-40-1 ReLU, meta-batch 25, Adam 1e-3, 5-shot evaluation on 600 tasks."""
    return MLSRConfig(
        parts=("sinusoid", "published"),
        sinusoid="maml",
        inner_steps=(1,),
        shots=shots,
        query_shots=shots,
        hidden=40,
        meta_iterations=iterations,
        meta_batch=25,
        meta_lr=1e-3,
        inner_lr=0.01,
        eval_shots=5,
        eval_tasks=EVAL_TASKS,
        threads=1,
        seed=seed,
    )


def init_name(method: str, shots: int) -> str:
    """The stored model's name, e.g. ``sinusoid_maml_k10``."""
    return f"sinusoid_{method}_k{shots}"


def regenerate_command(method: str, config: MLSRConfig) -> str:
    """The command that retrains one stored initialisation."""
    return (
        f"python -m metalab.pretrained.train sinusoid --methods {method} --shots {config.shots} "
        f"--iterations {config.meta_iterations} --seed {config.seed}"
    )


# --------------------------------------------------------------------------------------------
# training with checkpoints


def _load_checkpoint(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    return torch.load(path, weights_only=True)


def train_sinusoid_init(
    config: MLSRConfig,
    method: str,
    checkpoint: Path | None = None,
    checkpoint_every: int = 1_000,
    log: Callable[[str], None] = print,
) -> tuple[Trained, dict[str, Any]]:
    """Meta-train one initialisation for ``config.meta_iterations`` iterations, resuming from ``checkpoint``.

    Parameters
    ----------
    config : MLSRConfig
        From :func:`sinusoid_init_config`.
    method : {"maml", "mlsr", "maml_fz"}
    checkpoint : Path, optional
        Where the run's state is written every ``checkpoint_every`` iterations and read on a restart
        (the meta-batch stream is replayed to the iteration reached, so a resumed run sees the same tasks).
    log : callable
        Receives one line per checkpoint (iteration, mean query loss since the last line, seconds).

    Returns
    -------
    (Trained, summary)
        The model, and the training summary stored with it: iterations, the mean query loss of the
        last ``checkpoint_every`` iterations, seconds of meta-training, status.
    """
    spec = model_spec(config, "sinusoid", method, 1)
    net = make_net(config, "sinusoid")
    state = _load_checkpoint(checkpoint)
    if state is not None:
        net.load_state_dict(state["params"])
    learner = make_learner(config, "sinusoid", method, 1, net)
    done, seconds, last_loss = 0, 0.0, float("nan")
    if state is not None:
        learner.optimizer.load_state_dict(state["optimizer"])
        done, seconds, last_loss = int(state["iteration"]), float(state["seconds"]), float(state["loss"])
        log(f"{method}: resumed at iteration {done} from {checkpoint}")
    if done > config.meta_iterations:
        raise ValueError(
            f"{checkpoint} is at iteration {done}, past meta_iterations={config.meta_iterations}: "
            "ask for at least as many iterations or use another work folder"
        )
    sample = make_sampler(config, "sinusoid")
    for i in range(done):  # replay the meta-batch stream to where the checkpoint stopped
        sample(i)
    window, status, start = [], "ok", time.perf_counter()
    for stats in learner.fit(sample, config.meta_iterations - done) if done < config.meta_iterations else ():
        window.append(stats["query_loss"])
        status, i = stats["status"], done + stats["iteration"]
        if i % checkpoint_every == 0 or i == config.meta_iterations or status != "ok":
            last_loss, elapsed = sum(window) / len(window), seconds + time.perf_counter() - start
            window = []
            log(f"{method}: iteration {i}, query loss {last_loss:.4f}, {elapsed:.0f} s")
            if checkpoint is not None:
                _save_checkpoint(checkpoint, learner, i, elapsed, last_loss)
        if status != "ok":
            break
    seconds += time.perf_counter() - start if done < config.meta_iterations else 0.0
    summary = {
        "meta_iterations": config.meta_iterations,
        "final_query_loss": last_loss,
        "final_loss_window": checkpoint_every,
        "train_seconds": round(seconds, 1),
        "status": status,
    }
    return Trained(spec, net, learner.current_params(), seconds, status), summary


def _save_checkpoint(path: Path, learner, iteration: int, seconds: float, loss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "params": learner.current_params(),
        "optimizer": learner.optimizer.state_dict(),
        "iteration": iteration,
        "seconds": seconds,
        "loss": loss,
    }
    partial_path = path.with_suffix(".partial")
    torch.save(state, partial_path)
    partial_path.replace(path)


# --------------------------------------------------------------------------------------------
# evaluation and storage


def evaluate_sinusoid_init(config: MLSRConfig, model: Trained, tasks: int) -> dict[str, Any]:
    """5-shot test MSE after each of :data:`REPORTED_STEPS` steps on ``tasks`` fixed test tasks (seed
    ``config.seed``), with the 95 % interval of each mean."""
    config = config.replace(eval_tasks=tasks)
    mse = sinusoid_test_mse(config, model, max(REPORTED_STEPS))
    return {
        "eval_tasks": tasks,
        "eval_shots": config.eval_shots,
        "eval_query": config.eval_query,
        "seed": config.seed,
        "mse": {str(s): float(mse[s].mean()) for s in REPORTED_STEPS},
        "ci95": {str(s): ci95(mse[s]) for s in REPORTED_STEPS},
    }


def store_sinusoid_init(
    config: MLSRConfig, model: Trained, summary: dict[str, Any], directory: Path | None = None
) -> pretrained.ModelInfo:
    """Evaluate ``model`` (600 and 100 tasks) and store it as :func:`init_name` in :mod:`metalab.pretrained`
    (or in ``directory``)."""
    method = model.spec.method
    sizes, activation = network_sizes(config, "sinusoid")
    return pretrained.save(
        init_name(method, config.shots),
        model.params,
        config={"architecture": "mlp", "sizes": sizes, "activation": activation, "mlsr_config": config.to_dict()},
        description=f"{METHOD_NAMES[method]} initialisation for {config.shots}-shot sinusoid regression "
        f"(1-40-40-1 ReLU, {config.meta_iterations} meta-iterations)",
        paper=PAPER_CITATION,
        training=summary,
        evaluation={
            "test": evaluate_sinusoid_init(config, model, EVAL_TASKS),
            "check": evaluate_sinusoid_init(config, model, CHECK_TASKS),
        },
        command=regenerate_command(method, config),
        directory=directory,
    )


def load_sinusoid_init(method: str, shots: int = 10) -> tuple[MLSRConfig, Trained, pretrained.ModelInfo]:
    """A stored initialisation as the experiment's :class:`Trained` model, with the config it was trained
    with (what :func:`adapt_predictions` and :func:`evaluate_sinusoid_init` need) and its stored info."""
    net, info = pretrained.load(init_name(method, shots))
    config = MLSRConfig(**info.config["mlsr_config"])
    spec = model_spec(config, "sinusoid", method, 1)
    return config, Trained(spec, net, param_dict(net)), info


def train_sinusoid_inits(
    config: MLSRConfig,
    methods: Iterable[str] = INIT_METHODS,
    work_dir: Path | None = None,
    log: Callable[[str], None] = print,
    directory: Path | None = None,
) -> list[pretrained.ModelInfo]:
    """Train (resuming from ``work_dir``'s checkpoints), evaluate and store each method's initialisation
    (in the package, or in ``directory``), with one torch thread."""
    infos = []
    with torch_threads(1):
        for method in methods:
            checkpoint = None if work_dir is None else Path(work_dir) / f"{init_name(method, config.shots)}.pt"
            model, summary = train_sinusoid_init(config, method, checkpoint, log=log)
            infos.append(store_sinusoid_init(config, model, summary, directory))
            log(f"{method}: stored {infos[-1].file}")
    return infos


# --------------------------------------------------------------------------------------------
# the claim


def published_claim_table(shots: int = 10, tolerance: float = 1.0):
    """MAML's and MLSR's stored 5-shot sinusoid MSE beside the published MAML numbers, one row per
    (method, steps): :func:`~metalab.experiments.mlsr.claims.maml_sinusoid_row` (reproduced within
    ``tolerance`` · our 95 % half-width + 0.005) and :func:`~metalab.experiments.mlsr.claims.mlsr_sinusoid_row`.
    """
    import pandas as pd

    results = {m: pretrained.info(init_name(m, shots)).evaluation["test"] for m in ("maml", "mlsr")}
    rows = []
    for steps in REPORTED_STEPS:
        maml, maml_ci = (results["maml"][k][str(steps)] for k in ("mse", "ci95"))
        mlsr, mlsr_ci = (results["mlsr"][k][str(steps)] for k in ("mse", "ci95"))
        rows.append(maml_sinusoid_row(steps, maml, maml_ci, tolerance))
        rows.append(mlsr_sinusoid_row(steps, mlsr, mlsr_ci, maml, maml_ci))
    return pd.DataFrame(rows)
