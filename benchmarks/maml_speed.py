"""Meta-training steps per second of metalab's MAML (and MLSR) against its peers, side by side.

    .venv/bin/python benchmarks/maml_speed.py [--rounds 5] [--seconds 0.15] [--threads 1,2] [--no-mlsr]
                                              [--device auto]

The set-up is MAML's sinusoid regression: a 1-40-40-1 ReLU net, 10 support and 10 query points per task,
inner step 0.01, Adam 1e-3 on the meta-gradient.  "ours" is :class:`metalab.gbml.MetaLearner`.  The peers:

* ``loop``: what learn2learn's ``clone()``/``adapt()`` does (learn2learn itself does not build on Python
  3.11): per task, clone the parameters, take the inner steps with
  ``torch.autograd.grad(create_graph=True)``, add the query loss to a sum; then one backward.
* ``torchopt``: torchopt's functional API (``torchopt.sgd`` inner optimiser, ``update`` and
  ``apply_updates``) inside ``torch.func.grad`` for one task, ``torch.func.vmap`` over the meta-batch,
  one backward (torchopt's functorch MAML example).  Skipped with a note when torchopt is not installed.
* MLSR rows: the per-task ISTA loop against :func:`metalab.sparse.mlsr_gradient` (first order).

Every peer applies its meta-gradient with ``torch.optim.Adam``'s default implementation; ours with the
fused Adam kernel :class:`~metalab.gbml.MetaLearner` picks (the same step; 0.11 against 0.29 ms for
the six tensors of this net, measured alone), so a row times a whole meta-training step.  Both sides
of a row must give the same meta-gradient (relative difference printed) before they are timed.
Rounds alternate (ours, peer, ours, ...), each as long as ``--seconds``, and the medians of the per-round
rates are compared, with each thread count of ``--threads`` (on CUDA, ``--device cuda``, once: the
thread count does not apply, and every timing waits for the device to finish).  The per-second columns
are the absolute throughput of each side.
"""

from __future__ import annotations

import abc
import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import functional_call, grad, vmap

from metalab.core import resolve_device
from metalab.data import SinusoidTasks
from metalab.gbml import MetaLearner
from metalab.nets import MLP, param_dict
from metalab.sparse import mlsr_gradient, sparse_recovery, split_body

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchopt
except ImportError:  # the bench extra is not installed
    torchopt = None

INNER_LR, META_LR, SHOTS = 0.01, 1e-3, 10


# ---------------------------------------------------------------------------------------------
# Peers


class Peer(abc.ABC):
    """A meta-learner that computes ``gradients(support, query)`` and applies them with Adam."""

    def __init__(self, net, params):
        self.net = net
        self.params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=META_LR)

    @abc.abstractmethod
    def gradients(self, support, query) -> dict[str, torch.Tensor]:
        """The meta-gradient of the mean query loss at ``self.params``."""

    def step(self, support, query) -> None:
        for p, g in zip(self.params.values(), self.gradients(support, query).values(), strict=True):
            p.grad = g
        self.optimizer.step()


class LoopMAML(Peer):
    """learn2learn-style MAML: clone, ``autograd.grad(create_graph=True)`` per task and step, sum, backward."""

    def __init__(self, net, params, inner_steps: int, second_order: bool = True):
        super().__init__(net, params)
        self.inner_steps, self.second_order = inner_steps, second_order

    def gradients(self, support, query):
        (sx, sy), (qx, qy) = support, query
        total = 0.0
        for t in range(sx.shape[0]):
            fast = {k: v.clone() for k, v in self.params.items()}  # learn2learn's clone()
            for _ in range(self.inner_steps):
                loss = (functional_call(self.net, fast, (sx[t],)) - sy[t]).square().mean()
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=self.second_order)
                fast = {k: w - INNER_LR * g for (k, w), g in zip(fast.items(), grads, strict=True)}
            total = total + (functional_call(self.net, fast, (qx[t],)) - qy[t]).square().mean()
        grads = torch.autograd.grad(total / sx.shape[0], list(self.params.values()))
        return dict(zip(self.params, grads, strict=True))


class TorchoptMAML(Peer):
    """torchopt's functional inner optimiser in one task's objective, ``torch.func.vmap`` over the tasks."""

    def __init__(self, net, params, inner_steps: int, second_order: bool):
        super().__init__(net, params)
        self.inner_steps, self.second_order = inner_steps, second_order

    def _task(self, params, xs, ys, xq, yq):
        inner = torchopt.sgd(INNER_LR)
        state = inner.init(params)
        for _ in range(self.inner_steps):
            grads = grad(lambda p: (functional_call(self.net, p, (xs,)) - ys).square().mean())(params)
            if not self.second_order:
                grads = {k: g.detach() for k, g in grads.items()}
            updates, state = inner.update(grads, state, inplace=False)
            params = torchopt.apply_updates(params, updates, inplace=False)
        return (functional_call(self.net, params, (xq,)) - yq).square().mean()

    def gradients(self, support, query):
        (sx, sy), (qx, qy) = support, query
        losses = vmap(self._task, in_dims=(None, 0, 0, 0, 0))(self.params, sx, sy, qx, qy)
        return dict(zip(self.params, torch.autograd.grad(losses.mean(), list(self.params.values())), strict=True))


class LoopMLSR(Peer):
    """First-order MLSR task by task: ISTA on one task's body features, the query loss through the body."""

    def __init__(self, net, params, lam: float, steps: int):
        super().__init__(net, params)
        self.body, self.prefix = split_body(net)
        self.lam, self.steps = lam, steps

    def gradients(self, support, query):
        (sx, sy), (qx, qy) = support, query
        body_params = {k: self.params[k] for k, _ in self.body.named_parameters()}
        W, b = self.params[self.prefix + ".weight"], self.params[self.prefix + ".bias"]
        w0 = torch.cat([W.T, b[None]], 0)
        penalty = torch.ones_like(w0[:, :1]).detach()
        penalty[-1] = 0.0
        total = 0.0
        for t in range(sx.shape[0]):
            feats_s = functional_call(self.body, body_params, (sx[t],))
            Phi_s = torch.cat([feats_s, torch.ones_like(feats_s[:, :1])], 1)
            with torch.no_grad():
                w = sparse_recovery(Phi_s.detach(), sy[t], self.lam * penalty, steps=self.steps, w0=w0.detach()).coef
            w_hat = w0 + (w - w0).detach()
            feats_q = functional_call(self.body, body_params, (qx[t],))
            Phi_q = torch.cat([feats_q, torch.ones_like(feats_q[:, :1])], 1)
            total = total + (Phi_q @ w_hat - qy[t]).square().mean()
        grads = torch.autograd.grad(total / sx.shape[0], list(self.params.values()), allow_unused=True)
        return {
            k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(self.params.items(), grads, strict=True)
        }


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class Row:
    label: str
    meta_batch: int
    ours: Callable[[MLP, dict], MetaLearner]
    peer: Callable[[MLP, dict], Peer]
    goal: float | None  # the speed-up asked (ours / peer), None: no goal


def rows(mlsr: bool) -> list[Row]:
    def maml(K: int, second_order: bool) -> Callable[[MLP, dict], MetaLearner]:
        method = "maml" if second_order else "fomaml"
        return lambda net, p: MetaLearner(net, method, meta_lr=META_LR, params=p, inner_steps=K, inner_lr=INNER_LR)

    out = [
        Row(f"MAML vs loop, B={B}, K=1, 2nd", B, maml(1, True), lambda net, p: LoopMAML(net, p, 1), goal)
        for B, goal in ((25, 8.0), (100, 20.0))
    ]
    for B in (25, 100):
        for K in (1, 5):
            for second_order in (False, True):
                order = "2nd" if second_order else "1st"
                out.append(
                    Row(
                        f"MAML vs torchopt, B={B}, K={K}, {order}",
                        B,
                        maml(K, second_order),
                        lambda net, p, K=K, second_order=second_order: TorchoptMAML(net, p, K, second_order),
                        1.5,
                    )
                )
    if mlsr:
        for steps in (1, 10):
            out.append(
                Row(
                    f"MLSR vs loop, B=25, {steps} ISTA",
                    25,
                    lambda net, p, steps=steps: MetaLearner(
                        net, mlsr_gradient, meta_lr=META_LR, params=p, lam=0.1, steps=steps
                    ),
                    lambda net, p, steps=steps: LoopMLSR(net, p, 0.1, steps),
                    None,
                )
            )
    return out


def batches(meta_batch: int, device: torch.device, count: int = 8, seed: int = 0):
    tasks = SinusoidTasks.preset("maml")
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        batch = tasks.sample(meta_batch, SHOTS, SHOTS, generator=generator)
        (sx, sy), (qx, qy) = batch.support, batch.query
        support = (sx.to(device), sy.reshape(*sy.shape[:2], 1).to(device))
        out.append((support, (qx.to(device), qy.reshape(*qy.shape[:2], 1).to(device))))
    return out


def gradient_difference(ours: MetaLearner, peer: Peer, batch) -> float:
    """The largest relative difference between the two meta-gradients at the same parameters."""
    mine = ours._gradient(ours.model, ours.params, *batch).grads
    theirs = peer.gradients(*batch)
    return max(float((mine[k] - theirs[k]).norm() / theirs[k].norm().clamp_min(1e-12)) for k in mine)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step: Callable, data, steps: int) -> float:
    device = data[0][0][0].device
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(*data[i % len(data)])
    synchronize(device)
    return steps / (time.perf_counter() - start)


def measure(row: Row, data, rounds: int, seconds: float) -> dict:
    torch.manual_seed(0)
    net = MLP([1, 40, 40, 1]).to(data[0][0][0].device)
    start = param_dict(net)
    ours, peer = row.ours(net, start), row.peer(net, start)
    difference = gradient_difference(ours, peer, data[0])
    # warm-up, which also sizes the rounds: about `seconds` per side
    steps = {side: max(2, round(seconds * rate(side.step, data, 3))) for side in (ours, peer)}
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(rate(ours.step, data, steps[ours]))
        theirs.append(rate(peer.step, data, steps[peer]))
    m, r = statistics.median(mine), statistics.median(theirs)
    return {"ours": m, "peer": r, "ratio": m / r, "difference": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.15, help="length of one timed round per side")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma separated")
    parser.add_argument("--no-mlsr", action="store_true", help="leave out the MLSR rows")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (CUDA when present)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    selected = rows(mlsr=not args.no_mlsr)
    if torchopt is None:
        print("torchopt is not installed (pip install torchopt): its rows are skipped")
        selected = [row for row in selected if "torchopt" not in row.label]
    data = {B: batches(B, device) for B in {row.meta_batch for row in selected}}
    print(
        f"meta-training steps per second, sinusoid 1-40-40-1, {SHOTS}-shot, inner lr {INNER_LR}; medians of "
        f"{args.rounds} alternating rounds of ~{args.seconds:g} s per side; device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f"; torch {torch.__version__}"
        + (f", torchopt {torchopt.__version__}" if torchopt is not None else "")
    )
    header = f"{'threads':>7s}  {'row':36s} {'ours /s':>8s} {'peer /s':>8s} {'ours/peer':>9s} {'goal':>6s}  {'grad diff':>9s}"
    print(header)
    print("-" * len(header))
    thread_counts = [int(t) for t in args.threads.split(",")] if device.type == "cpu" else [torch.get_num_threads()]
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for row in selected:
            m = measure(row, data[row.meta_batch], args.rounds, args.seconds)
            goal = "" if row.goal is None else f">={row.goal:g}x"
            verdict = "" if row.goal is None else ("  met" if m["ratio"] >= row.goal else "  NOT met")
            print(
                f"{threads:7d}  {row.label:36s} {m['ours']:8.1f} {m['peer']:8.1f} {m['ratio']:8.2f}x {goal:>6s}  "
                f"{m['difference']:9.1e}{verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
