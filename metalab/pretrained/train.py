"""Regenerate stored models: ``python -m metalab.pretrained.train sinusoid [--methods ...] [--shots K ...]``.

``sinusoid`` meta-trains the MAML / MLSR / MAML-FZ sinusoid initialisations
(:func:`metalab.experiments.mlsr.sinusoid_inits.train_sinusoid_inits`), checkpointing to ``--work-dir``
(default ``~/.cache/metalab/checkpoints``) so that a stopped run resumes, and stores each one in the
package with its evaluation.  ``compressive`` meta-trains the compressive Sketch- and Query-Networks at
d = 10 (:func:`metalab.experiments.compressive.pretrained.train_compressive_models`), the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metalab.experiments.compressive.pretrained import (
    STORED_TASKS,
    compressive_model_config,
    train_compressive_models,
)
from metalab.experiments.memory_reduced.pretrained import (
    BACKBONE_METHODS,
    omniglot_config,
    train_omniglot_backbones,
)
from metalab.experiments.mlsr.sinusoid_inits import (
    INIT_METHODS,
    REPORTED_STEPS,
    sinusoid_init_config,
    train_sinusoid_inits,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalab.pretrained.train", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)
    sinusoid = groups.add_parser("sinusoid", help="MAML / MLSR / MAML-FZ sinusoid initialisations")
    sinusoid.add_argument("--methods", nargs="+", choices=INIT_METHODS, default=list(INIT_METHODS))
    sinusoid.add_argument("--shots", nargs="+", type=int, default=[10], help="K of meta-training (one model each)")
    sinusoid.add_argument("--iterations", type=int, default=30_000, help="meta-iterations")
    sinusoid.add_argument("--seed", type=int, default=0)
    sinusoid.add_argument(
        "--work-dir",
        type=Path,
        default=Path.home() / ".cache" / "metalab" / "checkpoints",
        help="checkpoints (resumed when present)",
    )
    omniglot = groups.add_parser("omniglot", help="Conv-4-32 backbones, Omniglot 5-way 1-shot (implicit, MAML)")
    omniglot.add_argument("--methods", nargs="+", choices=BACKBONE_METHODS, default=list(BACKBONE_METHODS))
    omniglot.add_argument("--iterations", type=int, default=600, help="meta-iterations")
    omniglot.add_argument("--seed", type=int, default=0)
    omniglot.add_argument("--data", default="", help="folder holding Omniglot's zips (empty: $METALAB_DATA)")
    omniglot.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "metalab" / "checkpoints")
    compressive = groups.add_parser("compressive", help="compressive Sketch- and Query-Networks at d = 10")
    compressive.add_argument("--tasks", nargs="+", choices=STORED_TASKS, default=list(STORED_TASKS))
    compressive.add_argument("--sketch-size", type=int, help="m (default: each task's, SKETCH_SIZES)")
    compressive.add_argument("--family", choices=("generated", "sklearn"), default="generated", help="data sets")
    compressive.add_argument("--steps", type=int, default=3000, help="meta-training steps")
    compressive.add_argument("--private", action="store_true", help="meta-train on private sketches")
    compressive.add_argument("--seed", type=int, default=0)
    compressive.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "metalab" / "checkpoints")
    args = parser.parse_args(argv)
    if args.group == "compressive":
        configs = [
            compressive_model_config(
                task, sketch_size=args.sketch_size, family=args.family, steps=args.steps, seed=args.seed
            )
            for task in args.tasks
        ]
        train_compressive_models(configs, args.work_dir, log=lambda line: print(line, flush=True), private=args.private)
        return 0
    if args.group == "omniglot":
        config = omniglot_config(args.data, iterations=args.iterations, seed=args.seed)
        train_omniglot_backbones(config, args.methods, args.work_dir, log=lambda line: print(line, flush=True))
        return 0
    for shots in args.shots:
        config = sinusoid_init_config(shots=shots, iterations=args.iterations, seed=args.seed)
        for model in train_sinusoid_inits(
            config, args.methods, args.work_dir, log=lambda line: print(line, flush=True)
        ):
            mse = model.evaluation["test"]["mse"]
            print(f"{model.name}: 5-shot MSE after 1/5/10 steps", *(f"{mse[str(s)]:.3f}" for s in REPORTED_STEPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
