"""Benchmark of the Jacobian-norm methods: ``python benchmarks/jacobian.py`` (``make bench``).

Times ``companion.jacobian.jacobian_norm`` against the naive per-sample loop over
``torch.autograd.functional.jacobian`` on two backbones -- (a) the digits CNN on ``(N, 1, 8, 8)``
inputs (``d_z = 64``) and (b) classifier32 on ``(N, 3, 32, 32)`` (``d_z = 128``) -- and prints one
table. Every time is the median of repeated runs after one warm-up run, the methods taking turns
so that load from other processes spreads evenly over them. The *floor* of the exact
method is ``d_z`` times one forward pass plus one batched VJP on the same batch: exact does one
forward and ``d_z`` VJPs, so it should stay near or below that.

It then checks the estimator where it matters: the AUROC of the negated Jacobian norm (higher =
more likely known) on a briefly trained digits CNN, exact against Hutchinson with 16 and 64
projections.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
from torch import nn

from companion import experiments
from companion.jacobian import jacobian_norm, norm_gap
from companion.models import Classifier32, SmallCNN, fold_batchnorm
from companion.spec import RunSpec

ESTIMATOR_PROJECTIONS = (1, 4, 16)
AUROC_PROJECTIONS = (16, 64)
AUROC_ITERATIONS = 500  # the book's digits runs
TIME_BUDGET_S = 10.0  # stop repeating a measurement once its runs have taken this long
AUROC_TOLERANCE = 0.01
FLOOR_TARGET = 1.3
SPEEDUP_TARGET = 5.0
T = TypeVar("T")


@dataclass
class Case:
    """One backbone to time: ``n`` samples, of which the naive loop gets the first ``naive_n``."""

    label: str
    model: nn.Module
    input_shape: tuple[int, ...]
    n: int
    naive_n: int


@dataclass
class Row:
    seconds: float  # for all n samples (extrapolated from the subset for the naive loop)
    rate: float  # samples per second
    rel_err: float  # mean |norm - exact| / exact over the samples timed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_times(runs: dict[str, Callable[[], T]], repeats: int,
                  device: torch.device) -> dict[str, tuple[float, T]]:
    """Median wall time in seconds of each run, and its last result.

    Each run is warmed up once; then the runs take turns, ``repeats`` rounds, so that a burst of
    load from another process spreads over all methods instead of spoiling one. A run stops
    repeating once its timed runs have taken ``TIME_BUDGET_S`` in all.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, T] = {}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            if times[name] and sum(times[name]) >= TIME_BUDGET_S:
                continue
            _sync(device)
            start = time.perf_counter()
            results[name] = run()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in runs}


def _load() -> float:
    """The 1-minute load average (NaN where the OS does not report one)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def naive_norms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The baseline: one full ``autograd.functional.jacobian`` per sample, ``(N, ...) -> (N,)``."""
    def one(v: torch.Tensor) -> torch.Tensor:
        return fn(v.unsqueeze(0)).squeeze(0)
    return torch.stack([torch.autograd.functional.jacobian(one, xi).norm() for xi in x])


def _one_vjp(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
    """One forward pass and one batched VJP: the unit of the exact method's floor."""
    x = x.detach().requires_grad_(True)
    z = fn(x)
    cotangent = torch.zeros_like(z)
    cotangent[:, 0] = 1.0
    torch.autograd.grad(z, x, cotangent)


def time_case(case: Case, repeats: int, device: torch.device) -> tuple[dict[str, Row], float, int]:
    """Rows by method name, the exact method's floor in seconds, and ``d_z``.

    Besides the methods on the model as given, the naive loop and exact are also timed on
    ``fold_batchnorm(model)``: the same function, with its BatchNorms folded into the convs.
    """
    torch.manual_seed(0)
    model = case.model.to(device).eval()
    folded = fold_batchnorm(model)
    x = torch.rand(case.n, *case.input_shape, device=device)
    subset = x[: case.naive_n]
    exact = jacobian_norm(model.embed, x)

    def naive(fn: Callable) -> Callable[[], torch.Tensor]:
        return lambda: naive_norms(fn, subset)

    def ours(fn: Callable, **kwargs) -> Callable[[], torch.Tensor]:
        return lambda: jacobian_norm(fn, x, generator=torch.Generator().manual_seed(0),
                                     progress=False, **kwargs)

    runs = {  # name: (what to run, how many samples it handles)
        "naive loop": (naive(model.embed), case.naive_n),
        "naive, BN folded": (naive(folded.embed), case.naive_n),
        "exact": (ours(model.embed), case.n),
        "exact, BN folded": (ours(folded.embed), case.n),
        "vmap": (ours(model.embed, method="vmap"), case.n),
    }
    for k in ESTIMATOR_PROJECTIONS:
        runs[f"hutchinson k={k}"] = (ours(model.embed, method="hutchinson", num_projections=k),
                                     case.n)
    timed = _median_times({name: run for name, (run, _) in runs.items()}
                          | {"one VJP": lambda: _one_vjp(model.embed, x)}, repeats, device)
    rows: dict[str, Row] = {}
    for name, (_, n) in runs.items():
        seconds, norms = timed[name]
        rel_err = float(((norms - exact[:n]).abs() / exact[:n]).mean())
        rows[name] = Row(seconds * case.n / n, n / seconds, rel_err)
    d_z = model.embed_dim
    return rows, d_z * timed["one VJP"][0], d_z


def format_table(cases: list[Case], results: list[tuple[dict[str, Row], float, int]]) -> str:
    """The side-by-side table: one column group per case, one line per method."""
    cols = f"{'seconds':>9} {'samples/s':>10} {'speed-up':>9} {'/floor':>7} {'rel.err':>8}"
    group_width = len(cols)
    first = 18
    lines = [" " * first + " | ".join(f"{c.label:<{group_width}}" for c in cases),
             f"{'method':<{first}}" + " | ".join([cols] * len(cases))]
    lines.append("-" * len(lines[-1]))
    for name in results[0][0]:
        cells = []
        for rows, floor, _ in results:
            r, naive = rows[name], rows["naive loop"]
            cells.append(f"{r.seconds:>9.3f} {r.rate:>10.1f} {naive.seconds / r.seconds:>8.1f}x "
                         f"{r.seconds / floor:>7.2f} {r.rel_err:>8.1e}")
        lines.append(f"{name:<{first}}" + " | ".join(cells))
    floors = " | ".join(f"{f'd_z = {d_z}: floor {floor:.3f} s':<{group_width}}"
                        for _, floor, d_z in results)
    lines.append(f"{'floor':<{first}}" + floors)
    return "\n".join(lines)


def auroc_check(device: torch.device, iterations: int = AUROC_ITERATIONS,
                seeds: int = 5) -> dict[str, float]:
    """Train the digits CNN (SCE) on split 0, then compare the AUROC of ``-norm`` (knowns
    positive) of the unit-normalised embedding from exact norms with Hutchinson's at each of
    ``AUROC_PROJECTIONS``, over ``seeds`` seeds.

    Returns the exact AUROC, the mean exact norms of both sets and, per ``k``, the mean and max
    over seeds of ``|AUROC_k - exact|``.
    """
    run = experiments.train(RunSpec.parse("sce", dataset="digits", iterations=iterations),
                            device=device)
    known, unknown = run.osr.test_known, run.osr.test_unknown
    exact = norm_gap(run.model, known, unknown)
    result = {"exact": exact.auroc, "n_known": len(known), "n_unknown": len(unknown),
              "seeds": seeds, "norm_known": exact.known_mean, "norm_unknown": exact.unknown_mean}
    for k in AUROC_PROJECTIONS:
        diffs = [abs(norm_gap(run.model, known, unknown, "hutchinson", num_projections=k,
                              seed=seed).auroc - result["exact"]) for seed in range(seeds)]
        result[f"mean_diff_{k}"] = statistics.mean(diffs)
        result[f"max_diff_{k}"] = max(diffs)
    return result


def default_sizes(device: torch.device) -> dict[str, tuple[int, int]]:
    """``(n, naive_n)`` per case: sized for about two minutes on a 2-core CPU."""
    if device.type == "cuda":
        return {"digits": (4096, 64), "classifier32": (512, 8)}
    return {"digits": (512, 64), "classifier32": (16, 4)}


def run_benchmark(device: str | torch.device = "cpu", n: int | None = None, repeats: int = 3,
                  accuracy: bool = True) -> None:
    """Run the benchmark and print the table (and the AUROC check unless ``accuracy=False``).

    ``n`` overrides the number of samples of both cases; the naive loop is timed on at most the
    default subset of them and its seconds are scaled up to ``n`` samples.
    """
    device = torch.device(device)
    sizes = default_sizes(device)
    if n is not None:
        sizes = {key: (n, min(n, naive_n)) for key, (_, naive_n) in sizes.items()}
    torch.manual_seed(0)
    cases = [
        Case("(a) digits SmallCNN, (N,1,8,8)", SmallCNN(6, in_channels=1), (1, 8, 8),
             *sizes["digits"]),
        Case("(b) classifier32, (N,3,32,32)", Classifier32(6), (3, 32, 32),
             *sizes["classifier32"]),
    ]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"Jacobian-norm benchmark: torch {torch.__version__}, {where}, {os.cpu_count()} cores, "
          f"load average {_load():.1f} at start;\nmedian of up to {repeats} runs after a "
          f"warm-up, methods in turn (fewer runs once a method has run {TIME_BUDGET_S:.0f} s)")
    for c in cases:
        print(f"  {c.label}: N = {c.n}; naive loop timed on {c.naive_n} of them, "
              "its seconds scaled to N")
    results = [time_case(c, repeats, device) for c in cases]
    print()
    print(format_table(cases, results))
    # This process keeps about get_num_threads() threads busy; much more load means company.
    if device.type == "cpu" and _load() > torch.get_num_threads() + 1:
        print(f"WARNING: load average {_load():.1f} after timing: other processes shared the "
              "CPU, so these times are unreliable; rerun on an idle machine")
    print("speed-up = naive loop seconds / method seconds; /floor = seconds / (d_z x one "
          "forward+VJP on the batch);\nboth refer to the model as given, also in the BN-folded "
          "rows; rel.err = mean |norm - exact| / exact\n(naive: on its subset)")

    digits = results[0][0]
    exact_floor = max(rows["exact"].seconds / floor for rows, floor, _ in results)
    speedup = digits["naive loop"].seconds / digits["exact"].seconds
    folded = digits["naive, BN folded"].seconds / digits["exact, BN folded"].seconds
    print()
    print(f"target exact <= {FLOOR_TARGET}x its floor (worse of the two): {exact_floor:.2f}x -> "
          f"{'met' if exact_floor <= FLOOR_TARGET else 'MISSED'}")
    print(f"target exact >= {SPEEDUP_TARGET:.0f}x faster than naive on digits: {speedup:.1f}x -> "
          f"{'met' if speedup >= SPEEDUP_TARGET else 'MISSED'}; both on the BN-folded model: "
          f"{folded:.1f}x -> {'met' if folded >= SPEEDUP_TARGET else 'MISSED'}")
    if accuracy:
        check = auroc_check(device)
        print(f"AUROC of -norm on digits split 0 ({check['n_known']} known / "
              f"{check['n_unknown']} unknown test samples; SmallCNN trained "
              f"{AUROC_ITERATIONS} iterations): exact {check['exact']:.4f}; mean exact norm "
              f"known {check['norm_known']:.2f}, unknown {check['norm_unknown']:.2f}")
        for k in AUROC_PROJECTIONS:
            mean, worst = check[f"mean_diff_{k}"], check[f"max_diff_{k}"]
            verdict = "" if k != 16 else (
                f" -> target |diff| <= {AUROC_TOLERANCE} "
                f"{'met' if mean <= AUROC_TOLERANCE else 'MISSED'} (on the mean)")
            print(f"  hutchinson k={k}: |AUROC - exact| over {check['seeds']} seeds: "
                  f"mean {mean:.4f}, max {worst:.4f}{verdict}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="benchmarks/jacobian.py",
        description="Time companion.jacobian.jacobian_norm (exact, vmap, and the Hutchinson "
                    "estimator with 1, 4 and 16 projections) against a naive per-sample loop "
                    "over torch.autograd.functional.jacobian, on the digits CNN and on "
                    "classifier32, and print one table. Then train the digits CNN briefly and "
                    "compare the known-vs-unknown AUROC of exact and estimated norms.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="where to run (default: cuda if available, else cpu)")
    parser.add_argument("--n", type=_positive_int, default=None, metavar="N",
                        help="samples per backbone (default: 512 digits and 16 classifier32 "
                             "inputs on CPU, 4096 and 512 on CUDA); the naive loop is timed on "
                             "a subset of at most 64 / 4 (CUDA: 64 / 8) of them")
    parser.add_argument("--repeats", type=_positive_int, default=3, metavar="R",
                        help="timed runs per measurement after one warm-up; the median is "
                             "reported (default: 3)")
    parser.add_argument("--skip-accuracy", action="store_true",
                        help="skip the training run and the AUROC comparison")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but CUDA is not available")
    run_benchmark(device=device, n=args.n, repeats=args.repeats, accuracy=not args.skip_accuracy)


if __name__ == "__main__":
    main()
