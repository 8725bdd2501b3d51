"""The memory-reduced lab's claims, one row each (claim | paper | metalab | verdict with its reason).

:func:`omniglot_claim_table` reads the stored backbones (:mod:`metalab.experiments.memory_reduced.pretrained`):
MAML's accuracy against Finn et al. 2017, Algorithm 1's against MAML's, and their graph memory at the
paper's K.  :func:`run_claim_table` reads a ``paper``-preset run's records: MAML against the published
number, Algorithm 1 against ANIL and ITD-BiO with the same inner loop, Lake et al.'s 20-way one-shot runs,
and graph memory at the paper's K and across K."""

from __future__ import annotations

import pandas as pd
import torch

from metalab import pretrained
from metalab.data.episodes import EpisodeBatch
from metalab.experiments.memory_reduced.context import options
from metalab.experiments.memory_reduced.pretrained import backbone_name, load_backbone
from metalab.implicit.measure import measure_method
from metalab.plots.styles import label

#: Finn et al. 2017, Table 1: MAML on Omniglot 5-way 1-shot, 1,200 training characters (4,800 with rotations)
MAML_PUBLISHED, MAML_PUBLISHED_CI, PUBLISHED_CHARACTERS = 0.987, 0.004, 1200
#: the same table, 20-way 1-shot
MAML_PUBLISHED_20_WAY = 0.958
#: how far below the published number a backbone trained on the small background sets may land, in
#: accuracy: fewer than a sixth of the training characters (and far fewer meta-iterations) cost a few points
EXPECTED_SHORTFALL = 0.08
#: inner steps of the memory-reduced paper's experiments (K = 20, step 0.05)
PAPER_K = 20
#: the paper's memory claim: Algorithm 1's graph at most half of MAML's
MEMORY_RATIO = 0.5


def published_row(ours: float, ci: float, episodes: int, reason: str) -> dict[str, str]:
    """MAML's accuracy beside the published 98.7 %: reproduced when within the two intervals; "below, as
    expected" when short by at most :data:`EXPECTED_SHORTFALL`, for ``reason``; not reproduced otherwise."""
    gap = MAML_PUBLISHED - ours
    if gap <= ci + MAML_PUBLISHED_CI:
        verdict = f"reproduced: {gap * 100:+.1f} points is within the two intervals"
    elif gap <= EXPECTED_SHORTFALL:
        verdict = f"below, as expected: {gap * 100:.1f} points under, <= {EXPECTED_SHORTFALL * 100:.0f}; {reason}"
    else:
        verdict = f"not reproduced: {gap * 100:.1f} points under, > {EXPECTED_SHORTFALL * 100:.0f} expected; {reason}"
    return {
        "claim": "MAML, Omniglot 5-way 1-shot test accuracy",
        "paper": f"{MAML_PUBLISHED:.1%} ± {MAML_PUBLISHED_CI:.1%} (Finn et al. 2017, full Omniglot)",
        "metalab": f"{ours:.1%} ± {ci:.1%} ({episodes} episodes)",
        "verdict": verdict,
    }


def _shortfall_reason(characters: int, iterations: int, batch: int) -> str:
    return (
        f"{characters} training characters ({4 * characters} with rotations) against {PUBLISHED_CHARACTERS:,} "
        f"({4 * PUBLISHED_CHARACTERS:,}), {iterations} meta-iterations of {batch} tasks"
    )


def maml_row(maml: pretrained.ModelInfo) -> dict[str, str]:
    """:func:`published_row` of the stored MAML backbone's 200-episode accuracy."""
    test, training = maml.evaluation["test"], maml.training
    reason = _shortfall_reason(training["train_classes"], training["meta_iterations"], 8)
    return published_row(test["accuracy"], test["ci95"], test["episodes"], reason)


def accuracy_row(implicit: pretrained.ModelInfo, maml: pretrained.ModelInfo) -> dict[str, str]:
    """Algorithm 1 matches MAML when its accuracy on the same episodes is not below MAML's by more than
    the two 95 % half-widths."""
    ours, theirs = implicit.evaluation["test"], maml.evaluation["test"]
    margin = ours["ci95"] + theirs["ci95"]
    difference = ours["accuracy"] - theirs["accuracy"]
    holds = difference >= -margin
    return {
        "claim": "Algorithm 1's test accuracy matches MAML's",
        "paper": "matches the baselines",
        "metalab": f"{ours['accuracy']:.1%} vs MAML {theirs['accuracy']:.1%} (same {ours['episodes']} episodes)",
        "verdict": ("holds" if holds else "does not hold")
        + f": {difference * 100:+.1f} points, {'>=' if holds else '<'} −{margin * 100:.1f} (the two intervals)",
    }


def graph_memory(method: str, inner_steps: int = PAPER_K) -> float:
    """MB autograd holds for one hypergradient of the stored ``method`` backbone on one 5-way 1-shot,
    5-query task at ``inner_steps`` (:func:`metalab.implicit.measure.measure_method`; the graph's size
    depends on the shapes only, so the images are noise)."""
    config, trained, _ = load_backbone(method)
    generator = torch.Generator().manual_seed(config.seed)
    side, ways = config.image_size, config.ways

    def images(per_class: int) -> torch.Tensor:
        return torch.rand(1, ways * per_class, 1, side, side, generator=generator)

    labels = lambda per_class: torch.arange(ways).repeat_interleave(per_class)[None]  # noqa: E731
    batch = EpisodeBatch(images(1), labels(1), images(config.queries), labels(config.queries), torch.zeros(1, ways))
    params = {k: v.clone().requires_grad_(True) for k, v in trained.params.items()}
    head = {k: v.clone().requires_grad_(True) for k, v in trained.head.items()}
    opts = options(config, inner_steps=inner_steps)
    return measure_method(method, trained.backbone, params, head, batch, opts, repeats=0)["graph_mb"]


def memory_ratio_row(ours: float, theirs: float, inner_steps: int) -> dict[str, str]:
    """Algorithm 1's graph memory ``ours`` (MB) at K = ``inner_steps`` against MAML's ``theirs``: the claim
    holds at a ratio <= :data:`MEMORY_RATIO`."""
    ratio = ours / theirs
    holds = ratio <= MEMORY_RATIO
    return {
        "claim": f"Algorithm 1's graph memory at least 50% below MAML's (K = {inner_steps})",
        "paper": "more than 50% lower (Section 5.2)",
        "metalab": f"{ours:.2f} MB vs MAML {theirs:.2f} MB per task",
        "verdict": ("holds" if holds else "does not hold")
        + f": ratio {ratio:.2f} {'<=' if holds else '>'} {MEMORY_RATIO}",
    }


def memory_row(inner_steps: int = PAPER_K) -> dict[str, str]:
    """:func:`memory_ratio_row` of the stored backbones, their graphs measured now."""
    return memory_ratio_row(graph_memory("implicit", inner_steps), graph_memory("maml", inner_steps), inner_steps)


def omniglot_claim_table(memory: bool = True) -> pd.DataFrame:
    """The stored Omniglot backbones' claims: MAML against the published number, Algorithm 1 against
    MAML, and (``memory``) their graph memory at the paper's K, measured now (about a second)."""
    implicit, maml = (pretrained.info(backbone_name(m)) for m in ("implicit", "maml"))
    rows = [maml_row(maml), accuracy_row(implicit, maml)]
    if memory:
        rows.append(memory_row())
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the stored paper-scale run (metalab reproduce memory_reduced)

#: how close Algorithm 1's accuracy must come to the best baseline with the same inner loop (the issue's bar)
BASELINE_MARGIN = 0.02
#: Algorithm 1's graph memory counts as flat in K when its largest-K graph is at most this times its K = 1 graph
FLAT = 1.1


def _episodes(frame: pd.DataFrame) -> pd.DataFrame:
    final = frame[(frame["part"] == "final") & (frame["benchmark"] == "episodes")]
    return final.set_index("method")


def baseline_row(frame: pd.DataFrame) -> dict[str, str]:
    """Algorithm 1 against the best of ANIL and ITD-BiO (the same linear head and inner loop) on the run's
    final test episodes: reproduced when at most :data:`BASELINE_MARGIN` below."""
    final = _episodes(frame)
    baselines = final.loc[[m for m in ("anil", "itd_bio") if m in final.index], "accuracy"]
    ours, best = final.loc["implicit", "accuracy"], baselines.max()
    holds = ours >= best - BASELINE_MARGIN
    return {
        "claim": "Algorithm 1 learns as well as ANIL and ITD-BiO with the same inner loop",
        "paper": "comparable accuracy to the baselines (Section 5)",
        "metalab": f"{ours:.1%} vs "
        + ", ".join(f"{label('memory_reduced', m)} {a:.1%}" for m, a in baselines.items())
        + f" ({int(final.loc['implicit', 'episodes'])} episodes)",
        "verdict": ("reproduced" if holds else "not reproduced")
        + f": {(ours - best) * 100:+.1f} points against the best, bar −{BASELINE_MARGIN * 100:.0f}",
    }


def memory_rows(frame: pd.DataFrame, inner_steps: int = PAPER_K) -> list[dict[str, str]]:
    """Algorithm 1's graph memory against MAML's at the paper's K (:func:`memory_ratio_row`), and across the
    run's K grid (flat: the largest K's graph at most :data:`FLAT` times K = 1's, while MAML's grows)."""
    memory = frame[frame["part"] == "memory"].pivot_table(index="inner_steps", columns="method", values="graph_mb")
    lowest, highest = memory.index.min(), memory.index.max()
    growth = memory.loc[highest] / memory.loc[lowest]
    flat = growth["implicit"] <= FLAT
    return [
        memory_ratio_row(memory.loc[inner_steps, "implicit"], memory.loc[inner_steps, "maml"], inner_steps),
        {
            "claim": "Algorithm 1's memory does not grow with K",
            "paper": "O(max{p, q}) per task, independent of K (Theorem / Section 4)",
            "metalab": f"K = {lowest:.0f} to {highest:.0f}: Algorithm 1 x{growth['implicit']:.2f}, "
            f"MAML x{growth['maml']:.1f}",
            "verdict": ("holds" if flat else "does not hold")
            + f": growth {growth['implicit']:.2f} {'<=' if flat else '>'} {FLAT}",
        },
    ]


def one_shot_row(frame: pd.DataFrame) -> dict[str, str] | None:
    """Each backbone on Lake et al.'s 20 Omniglot one-shot runs (20-way, its better predictor) beside MAML's
    published 20-way 1-shot accuracy (on episodes of the test alphabets, not these runs): "below, as
    expected" within :data:`EXPECTED_SHORTFALL`, else not reproduced.  None when the run has no such records."""
    runs = frame[(frame["part"] == "final") & (frame["benchmark"] == "omniglot_one_shot")]
    if runs.empty:
        return None
    trained = runs[runs["predictor"].isin(("nearest", "head"))]
    best = trained.groupby("method")["accuracy"].max().sort_values(ascending=False)
    people = runs.loc[runs["method"] == "people", "accuracy"]
    gap = MAML_PUBLISHED_20_WAY - best.iloc[0]
    return {
        "claim": "Omniglot 20-way one-shot (Lake et al.'s 20 runs), backbones meta-trained 5-way",
        "paper": f"MAML {MAML_PUBLISHED_20_WAY:.1%} on 20-way episodes (Finn et al. 2017)"
        + (f"; people {people.iloc[0]:.1%} on these runs" if len(people) else ""),
        "metalab": ", ".join(f"{label('memory_reduced', m)} {a:.1%}" for m, a in best.items()),
        "verdict": ("below, as expected" if gap <= EXPECTED_SHORTFALL else "not reproduced")
        + f": the best {gap * 100:.1f} points under MAML's 20-way number, "
        + f"{'<=' if gap <= EXPECTED_SHORTFALL else '>'} {EXPECTED_SHORTFALL * 100:.0f}; meta-trained 5-way, "
        + "not 20-way, on the small background sets",
    }


def run_claim_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The claims of a paper-preset run's records: MAML against the published number, Algorithm 1 against
    ANIL and ITD-BiO, the 20-way one-shot runs (when the run found them), and the two memory claims."""
    final = _episodes(frame)
    maml = final.loc["maml"]
    training = frame[(frame["part"] == "training") & (frame["method"] == "maml")]
    reason = (
        f"{maml['dataset']}; {int(training['iteration'].max())} meta-iterations, fewer training characters "
        f"than the {PUBLISHED_CHARACTERS:,} of the published split"
    )
    rows = [published_row(maml["accuracy"], maml["ci95"], int(maml["episodes"]), reason), baseline_row(frame)]
    one_shot = one_shot_row(frame)
    return pd.DataFrame([*rows, *([one_shot] if one_shot else []), *memory_rows(frame)])
