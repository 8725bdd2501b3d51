"""Conv-4 backbones meta-trained on Omniglot 5-way 1-shot by Algorithm 1 (``"implicit"``) and by MAML,
checkpointed so that a stopped run resumes, evaluated on fixed test episodes and stored in
:mod:`metalab.pretrained`.

The setting is the one the memory-reduced lab compared the methods at: the small Omniglot background
sets (train/test split by alphabet, the training characters' 90/180/270-degree rotations as new
classes), 28x28 images, Conv-4 with 32 channels, meta-batches of 8 tasks, K = 5 inner steps of 0.2
with λ = 0.01 (Algorithm 1 solves its head by damped Newton and its implicit system by N = 10 CG
steps), Adam at the config's meta learning rate.  The meta-update is the one
:func:`metalab.experiments.memory_reduced.training.train` takes, from the same seeded network and the
same episode stream, so a stored model is that run's network.

A stored model's evaluation is the query accuracy after the method's own inner loop
(:func:`metalab.experiments.memory_reduced.training.evaluate`) on test episodes ``0 .. n-1`` of the
test classes: ``test`` (:data:`EVAL_EPISODES`) and the first :data:`CHECK_EPISODES` of them
(``check``), which a test repeats in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalab import pretrained
from metalab.core.device import torch_threads
from metalab.experiments.memory_reduced.config import MemoryReducedConfig
from metalab.experiments.memory_reduced.context import (
    Data,
    Trained,
    load_data,
    make_model,
    options,
    sampler,
    training_sampler,
)
from metalab.experiments.memory_reduced.training import evaluate
from metalab.implicit import hypergradient, quiet_numerics
from metalab.implicit.registry import LEARNS_HEAD
from metalab.nets import param_dict, split_params

#: the methods whose backbones are stored
BACKBONE_METHODS = ("implicit", "maml")
#: test episodes of the stored evaluation, and of the quick check a test repeats (the first ones)
EVAL_EPISODES, CHECK_EPISODES = 200, 40
SHOTS = 1
PAPER_CITATION = "Finn, Abbeel & Levine 2017 (MAML), Omniglot 5-way 1-shot; the memory-reduced paper's Algorithm 1"
METHOD_NAMES = {"implicit": "Algorithm 1 (implicit)", "maml": "MAML"}


def omniglot_config(data_path: str = "", iterations: int = 600, seed: int = 0) -> MemoryReducedConfig:
    """Omniglot 5-way 1-shot, Conv-4-32 at 28x28, B = 8, K = 5, inner step 0.2, λ = 0.01, CG N = 10, on the CPU."""
    return MemoryReducedConfig(
        parts=("training",),
        dataset="omniglot",
        data_path=data_path,
        hidden=32,
        meta_batch=8,
        shots=(SHOTS,),
        inner_steps=5,
        inner_lr=0.2,
        l2=0.01,
        cg_steps=10,
        inner_solver="newton",
        meta_iterations=iterations,
        eval_episodes=EVAL_EPISODES,
        threads=1,
        device="cpu",
        seed=seed,
    )


def backbone_name(method: str) -> str:
    """The stored model's name, e.g. ``omniglot_implicit_5w1s``."""
    return f"omniglot_{method}_5w{SHOTS}s"


def regenerate_command(method: str, config: MemoryReducedConfig) -> str:
    """The command that retrains one stored backbone (``--data`` is where Omniglot's zips are)."""
    return (
        f"python -m metalab.pretrained.train omniglot --methods {method} --iterations {config.meta_iterations} "
        f"--seed {config.seed} --data DIR"
    )


# --------------------------------------------------------------------------------------------
# training with checkpoints


def initial_network(config: MemoryReducedConfig, method: str) -> tuple[Trained, list[torch.Tensor]]:
    """The seeded network :func:`~metalab.experiments.memory_reduced.training.train` starts from, and the
    tensors Adam updates (the backbone, and the head initialisation for the methods that learn one)."""
    backbone, params, head = make_model(config, config.seed + 7919 * SHOTS)
    learned = list(params.values())
    if method in LEARNS_HEAD:
        head = {k: v.clone().requires_grad_(True) for k, v in head.items()}
        learned += list(head.values())
    return Trained(backbone, params, head, 0.0), learned


def train_backbone(
    config: MemoryReducedConfig,
    method: str,
    data: Data,
    checkpoint: Path | None = None,
    checkpoint_every: int = 50,
    log: Callable[[str], None] = print,
) -> tuple[Trained, dict[str, Any]]:
    """Meta-train ``method`` for ``config.meta_iterations`` iterations, resuming from ``checkpoint``.

    Each iteration takes the meta-batch ``i·B .. (i+1)·B − 1`` of the training stream, so a resumed run
    sees the tasks an uninterrupted one would.  Returns the network and its training summary
    (iterations, mean query loss of the last ``checkpoint_every`` iterations, seconds, statuses).
    """
    trained, learned = initial_network(config, method)
    optimiser = torch.optim.Adam(learned, lr=config.meta_lr)
    done, last_loss, statuses = 0, float("nan"), set()
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        with torch.no_grad():
            for tensor, stored in zip(learned, state["learned"], strict=True):
                tensor.copy_(stored)
        optimiser.load_state_dict(state["optimiser"])
        done, trained.seconds, last_loss = int(state["iteration"]), float(state["seconds"]), float(state["loss"])
        statuses = set(state["statuses"])
        log(f"{method}: resumed at iteration {done} from {checkpoint}")
    if done > config.meta_iterations:
        raise ValueError(
            f"{checkpoint} is at iteration {done}, past meta_iterations={config.meta_iterations}: "
            "ask for at least as many iterations or use another work folder"
        )
    episodes = training_sampler(config, data, SHOTS)
    episodes.reset(done * config.meta_batch)
    opts = options(config)
    window = []
    for i in range(done + 1, config.meta_iterations + 1):
        start = time.perf_counter()
        batch = episodes.sample_batch(config.meta_batch)
        with quiet_numerics():
            result = hypergradient(method, trained.backbone, trained.params, trained.head, *_tensors(batch), **opts)
        gradients = list(result.hypergrad.values())
        if method in LEARNS_HEAD:
            gradients += list(result.head_hypergrad.values())
        for tensor, gradient in zip(learned, gradients, strict=True):
            tensor.grad = gradient
        optimiser.step()
        trained.seconds += time.perf_counter() - start
        window.append(float(result.query_loss))
        statuses |= {result.status} - {"ok"}
        if not np.isfinite(window[-1]):
            raise FloatingPointError(f"{method}: non-finite query loss at iteration {i}; nothing stored")
        if i % checkpoint_every == 0 or i == config.meta_iterations:
            last_loss, window = float(np.mean(window)), []
            log(f"{method}: iteration {i}, query loss {last_loss:.4f}, {trained.seconds:.0f} s")
            if checkpoint is not None:
                _save_checkpoint(checkpoint, learned, optimiser, i, trained.seconds, last_loss, statuses)
    summary = {
        "meta_iterations": config.meta_iterations,
        "final_query_loss": last_loss,
        "final_loss_window": checkpoint_every,
        "train_seconds": round(trained.seconds, 1),
        "status": ",".join(sorted(statuses)) or "ok",
    }
    return trained, summary


def _tensors(batch) -> tuple[torch.Tensor, ...]:
    return batch.support_x, batch.support_y, batch.query_x, batch.query_y


def _save_checkpoint(path: Path, learned, optimiser, iteration: int, seconds: float, loss: float, statuses) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "learned": [t.detach().clone() for t in learned],
        "optimiser": optimiser.state_dict(),
        "iteration": iteration,
        "seconds": seconds,
        "loss": loss,
        "statuses": sorted(statuses),
    }
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


# --------------------------------------------------------------------------------------------
# evaluation, storage and loading


def evaluate_backbone(config: MemoryReducedConfig, method: str, trained: Trained, data: Data, episodes: int) -> dict:
    """Mean query accuracy (and its 95 % half-width, 1.96 s/√n) on test episodes ``0 .. episodes-1``."""
    test = sampler(config, data.test, SHOTS, f"test:{SHOTS}")
    accuracies = evaluate(method, trained, test, episodes, config)
    half_width = 1.96 * accuracies.std(ddof=1) / np.sqrt(len(accuracies)) if len(accuracies) > 1 else float("nan")
    return {"episodes": episodes, "accuracy": float(accuracies.mean()), "ci95": float(half_width)}


def store_backbone(
    config: MemoryReducedConfig,
    method: str,
    trained: Trained,
    summary: dict[str, Any],
    data: Data,
    directory: Path | None = None,
) -> pretrained.ModelInfo:
    """Evaluate ``trained`` (test and check episodes) and store it as :func:`backbone_name` ``(method)``;
    a method that meta-learns the head stores it as the module's ``head.*`` (``out_features = ways``)."""
    tensors = dict(trained.params)
    architecture = {"architecture": "conv4", "in_channels": 1, "hidden": config.hidden, "image_size": config.image_size}
    if method in LEARNS_HEAD:
        tensors |= {f"head.{k}": v for k, v in trained.head.items()}
        architecture["out_features"] = config.ways
    return pretrained.save(
        backbone_name(method),
        tensors,
        config={**architecture, "method": method, "memory_reduced_config": config.replace(data_path="").to_dict()},
        description=f"Conv-4-32 meta-trained by {METHOD_NAMES[method]} on Omniglot 5-way {SHOTS}-shot "
        f"(small background sets with rotations, {config.meta_iterations} meta-iterations)",
        paper=PAPER_CITATION,
        training={**summary, "dataset": data.name, "train_classes": len(data.train), "test_classes": len(data.test)},
        evaluation={
            "test": evaluate_backbone(config, method, trained, data, EVAL_EPISODES),
            "check": evaluate_backbone(config, method, trained, data, CHECK_EPISODES),
        },
        command=regenerate_command(method, config),
        directory=directory,
    )


def load_backbone(
    method: str, data_path: str = "", directory: Path | None = None
) -> tuple[MemoryReducedConfig, Trained, pretrained.ModelInfo]:
    """A stored backbone as the lab's :class:`Trained` network (with the zero head, or MAML's learned
    head initialisation), with its config (``data_path`` replaced) and its stored info."""
    net, info = pretrained.load(backbone_name(method), directory)
    config = MemoryReducedConfig(**{**info.config["memory_reduced_config"], "data_path": data_path})
    params = param_dict(net)
    backbone, _, head = make_model(config, config.seed)
    if net.head is not None:
        params, head = split_params(params)
    backbone.load_state_dict(params)
    return config, Trained(backbone, params, head, info.training["train_seconds"]), info


def train_omniglot_backbones(
    config: MemoryReducedConfig,
    methods: Iterable[str] = BACKBONE_METHODS,
    work_dir: Path | None = None,
    log: Callable[[str], None] = print,
    directory: Path | None = None,
) -> list[pretrained.ModelInfo]:
    """Train (resuming from ``work_dir``'s checkpoints), evaluate and store each method's backbone (in
    the package, or in ``directory``), with one torch thread."""
    infos = []
    with torch_threads(1):
        data = load_data(config)
        for method in methods:
            checkpoint = None if work_dir is None else Path(work_dir) / f"{backbone_name(method)}.pt"
            trained, summary = train_backbone(config, method, data, checkpoint, log=log)
            infos.append(store_backbone(config, method, trained, summary, data, directory))
            log(f"{method}: stored {infos[-1].file}, test accuracy {infos[-1].evaluation['test']['accuracy']:.3f}")
    return infos
