"""Command line of the companion package: ``python -m companion <command> [options]``.

Each command is one ``_add_<command>`` function that registers a subparser and sets ``run`` to
the function that executes it; imports of the heavy modules happen inside ``run``, so
``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from .cli import _positive_int, add_subcommands


def _run_jacobian_benchmark(args: argparse.Namespace) -> None:
    import torch

    from . import bench

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but CUDA is not available")
    bench.main(device=args.device, n=args.n, repeats=args.repeats,
               accuracy=not args.skip_accuracy)


def _add_jacobian_benchmark(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "jacobian-benchmark",
        help="time the ways of computing per-sample Jacobian norms",
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
    parser.set_defaults(run=_run_jacobian_benchmark)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m companion`` parser, one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="python -m companion",
        description="Companion of the book 'Understanding Open-Set Recognition by Jacobian "
                    "Norm'. Run 'python -m companion <command> --help' for a command's options.")
    commands = parser.add_subparsers(title="commands", metavar="<command>", required=True)
    _add_jacobian_benchmark(commands)
    add_subcommands(commands)  # train, evaluate, benchmark
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen command."""
    args = build_parser().parse_args(argv)
    if getattr(args, "device", "") is None:
        from . import runtime

        args.device = runtime.device().type
    args.run(args)


if __name__ == "__main__":
    main()
