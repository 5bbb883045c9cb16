"""The ``train``, ``evaluate`` and ``benchmark`` commands of ``python -m companion``.

``add_subcommands(commands)`` registers them on the subparsers of the package's main parser
(each sets ``run`` to the function that executes it, like the other commands there); ``main``
runs them on their own. Heavy modules are imported inside the ``run`` functions, so ``--help``
stays instant.
"""

from __future__ import annotations

import argparse
from typing import Sequence

LOSS_HELP = ("a loss head -- sce, center, ovr, movr, or intra (the intra-class term alone, "
             "an ablation) -- optionally followed by training techniques: +aug (data "
             "augmentation), +wd (weight decay, see --weight-decay), +ssl (rotation "
             "self-supervision); e.g. movr+aug+wd+ssl. Without +wd there is no weight decay, "
             "without +aug no augmentation")


def parse_int_list(text: str) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``, ``"0,2,3"`` -> ``[0, 2, 3]``; mixed: ``"0-2,7"``."""
    values = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            values += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers as a range like 0-4 or a list like 0,2,3, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _loss_list(text: str) -> list[str]:
    from .experiments import parse_loss

    labels = [part.strip() for part in text.split(",") if part.strip()]
    try:
        for label in labels:
            parse_loss(label)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not labels:
        raise argparse.ArgumentTypeError("expected at least one loss")
    return labels


def _loss(text: str) -> str:
    labels = _loss_list(text)
    if len(labels) != 1:
        raise argparse.ArgumentTypeError(f"expected one loss, got {text!r}")
    return labels[0]


def _dataset(text: str) -> str:
    from .data import DATASETS

    if text not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; valid names: "
                                         f"{', '.join(DATASETS)}")
    return text


def _int_at_least(low: int, what: str):
    """An argparse type for integers >= ``low``; ``what`` names them in the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", type=_dataset, metavar="NAME",
                        help="toy2d, digits, mnist, svhn, cifar10, cifar+10, cifar+50 or "
                             "tiny_imagenet (default: digits; toy2d and digits need no "
                             "download)")
    parser.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                        help="SGD steps per run (default: 500 on digits, 1000 on toy2d, the "
                             "paper's 20000 elsewhere; fewer with COMPANION_FAST=1)")
    parser.add_argument("--weight-decay", type=float, default=1e-3, metavar="WD",
                        help="the weight decay a +wd loss uses (default: 1e-3)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="where to run (default: cuda if available, else cpu)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="dataset folder (default: $COMPANION_DATA_DIR or "
                             "~/.cache/companion/data)")
    parser.add_argument("--download", action="store_true",
                        help="download a missing dataset (mnist, svhn, cifar, tiny_imagenet) "
                             "into the dataset folder, verified by checksum")


def _run_kwargs(args: argparse.Namespace) -> dict:
    """``run_osr`` / ``train_osr`` keyword arguments from the common options."""
    import dataclasses

    import torch

    from .experiments import default_config

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but CUDA is not available")
    kwargs = {"device": torch.device(args.device) if args.device else None,
              "data_root": args.data_dir, "download": args.download}
    if args.iterations is not None:
        kwargs["config"] = dataclasses.replace(default_config(args.dataset),
                                               iterations=args.iterations)
    return kwargs


def _print_row(row: dict) -> None:
    width = max(map(len, row))
    for key, value in row.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float)
              else f"{key:<{width}}  {value}")


def _run_benchmark(args: argparse.Namespace) -> None:
    import pandas as pd

    from .experiments import format_summary, sweep, summarise

    rows = sweep(args.dataset, args.splits, args.seeds, args.losses, out_csv=args.out,
                 resume=not args.restart, technique_weight_decay=args.weight_decay,
                 **_run_kwargs(args))
    table = format_summary(summarise(rows))
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.T.to_string())
    if args.out:
        print(f"\nrows written to {args.out}")


def _add_benchmark(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "benchmark", help="train and evaluate over splits x seeds; print mean ± std",
        description="Protocol A: for every loss, split and seed, train a model on the known "
                    "classes and score known vs unknown test samples with MSP, max logit, "
                    "cosine, m-OvR and Jacobian-norm scores (higher = more likely known). "
                    "Prints closed-set accuracy, AUROC, OSCR, the Jacobian-norm gap and DBI as "
                    "mean ± std over splits x seeds. With --out every finished run is appended "
                    "to a CSV at once; running the same command again skips the runs already "
                    "there, so an interrupted benchmark resumes.",
        epilog="example: python -m companion benchmark --dataset digits --losses sce,movr "
               "--splits 0-4 --seeds 0-2 --out results.csv")
    _add_common(parser)
    parser.add_argument("--losses", type=_loss_list, default=["sce", "movr"], metavar="LIST",
                        help=f"comma-separated losses (default: sce,movr); each is {LOSS_HELP}")
    parser.add_argument("--splits", type=parse_int_list, default=[0, 1, 2, 3, 4],
                        metavar="SPEC", help="known/unknown splits 0..4, as a range (0-4) or "
                                             "a list (0,2,3) (default: 0-4)")
    parser.add_argument("--seeds", type=parse_int_list, default=[0], metavar="SPEC",
                        help="random seeds, same syntax (default: 0)")
    parser.add_argument("--out", default=None, metavar="CSV",
                        help="CSV file collecting one row per run (default: none)")
    parser.add_argument("--restart", action="store_true",
                        help="recompute every run and overwrite --out instead of resuming")
    parser.set_defaults(run=_run_benchmark)


def _run_train(args: argparse.Namespace) -> None:
    import dataclasses

    from .experiments import default_config, parse_loss, train_osr
    from .train import save_checkpoint

    spec = parse_loss(args.loss, args.weight_decay)
    out = args.out or f"{args.dataset}_{spec.label}_split{args.split}_seed{args.seed}.pt"
    kwargs = _run_kwargs(args)
    if args.checkpoint_every or args.resume:
        # the training state (optimizer, RNGs, data order) lives beside the final weights
        config = kwargs.get("config") or default_config(args.dataset, args.seed)
        kwargs["config"] = dataclasses.replace(
            config, checkpoint_path=f"{out}.state", checkpoint_every=args.checkpoint_every,
            resume=args.resume)
    model, _, info = train_osr(args.dataset, args.split, args.loss, args.seed, progress=True,
                               weight_decay=spec.weight_decay, **kwargs)
    save_checkpoint({"model": {k: v.cpu() for k, v in model.state_dict().items()},
                     "run": info}, out)
    print(f"trained {info['loss']} on {args.dataset} split {args.split} seed {args.seed} in "
          f"{info['train_time_s']:.1f} s; checkpoint: {out}")


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", help="train one model and save it",
        description="Train one model on the known classes of a split and save its weights "
                    "and run settings to a checkpoint that 'evaluate' reads.")
    _add_common(parser)
    parser.add_argument("--loss", type=_loss, default="sce", metavar="LOSS",
                        help=f"{LOSS_HELP} (default: sce)")
    parser.add_argument("--split", type=int, default=0, help="known/unknown split 0..4 "
                                                             "(default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="checkpoint to write (default: "
                             "<dataset>_<loss>_split<split>_seed<seed>.pt)")
    parser.add_argument("--checkpoint-every", type=_non_negative_int, default=0, metavar="N",
                        help="save the full training state to <out>.state every N steps "
                             "(atomically), so an interrupted run can --resume "
                             "(default: 0, no training-state file)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>.state if it exists; the resumed run ends "
                             "with exactly the weights of an uninterrupted one")
    parser.set_defaults(run=_run_train)


def _run_evaluate(args: argparse.Namespace) -> None:
    import torch

    from . import data
    from .experiments import build_osr_model, evaluate_osr, parse_loss
    from .train import load_checkpoint

    state = load_checkpoint(args.checkpoint)
    info = state["run"]
    osr = data.load_osr(info["dataset"], info["split"], root=args.data_dir,
                        download=args.download, seed=info["seed"])
    model = build_osr_model(info["dataset"], osr.input_shape, osr.num_classes,
                            parse_loss(info["loss"]).head, info["model"])
    model.load_state_dict(state["model"])
    device = torch.device(args.device) if args.device else None
    _print_row({**info, **evaluate_osr(model, osr, device=device, seed=info["seed"])})


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate", help="print the open-set metrics of a saved model",
        description="Load a checkpoint written by 'train', rebuild its test sets and print "
                    "closed-set accuracy, AUROC and OSCR of every score, Jacobian norms and DBI.")
    parser.add_argument("checkpoint", help="file written by 'python -m companion train'")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="where to run (default: cuda if available, else cpu)")
    parser.add_argument("--data-dir", default=None, metavar="DIR", help="dataset folder")
    parser.add_argument("--download", action="store_true", help="download a missing dataset")
    parser.set_defaults(run=_run_evaluate)


def add_subcommands(commands: argparse._SubParsersAction) -> None:
    """Register ``train``, ``evaluate`` and ``benchmark`` on a parser's subcommands."""
    _add_train(commands)
    _add_evaluate(commands)
    _add_benchmark(commands)


def build_parser() -> argparse.ArgumentParser:
    """A parser with just these three commands (the package's main parser has them all)."""
    parser = argparse.ArgumentParser(prog="python -m companion")
    add_subcommands(parser.add_subparsers(title="commands", metavar="<command>", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen command."""
    args = build_parser().parse_args(argv)
    args.run(args)
