import argparse
import dataclasses
import math

import pandas as pd
import pytest
import torch

from companion import cli, experiments, train
from companion.experiments import (SCORE_NAMES, parse_loss, run_osr, summarise, sweep,
                                   format_summary)
from companion.train import TrainConfig, load_checkpoint

TINY = TrainConfig(iterations=30, batch_size=32, lr=0.05)


def test_parse_loss_labels():
    spec = parse_loss("movr+ssl+aug+wd")
    assert (spec.head, spec.augment, spec.weight_decay, spec.ssl_weight) == \
        ("movr", "auto", 1e-3, 0.1)
    assert spec.label == "movr+aug+wd+ssl"  # canonical order
    assert parse_loss("sce").label == "sce" and parse_loss("sce").weight_decay == 0.0
    with pytest.raises(ValueError, match="unknown loss 'arpl'.*valid losses: center, intra, movr, ovr"):
        parse_loss("arpl")
    with pytest.raises(ValueError, match="unknown technique 'mixup'.*aug, wd, ssl"):
        parse_loss("sce+mixup")


def test_run_osr_on_toy2d_returns_every_metric_in_range():
    row = run_osr("toy2d", 1, "movr+wd", 0, config=TINY, device="cpu")
    assert (row["dataset"], row["split"], row["seed"], row["loss"], row["model"]) == \
        ("toy2d", 1, 0, "movr+wd", "mlp")
    assert row["iterations"] == 30 and row["weight_decay"] == 1e-3 and row["augment"] == "none"
    for name in SCORE_NAMES:
        assert 0 <= row[f"auroc_{name}"] <= 1
        assert 0 <= row[f"oscr_{name}"] <= row["accuracy"] + 1e-12  # OSCR <= accuracy
    assert 0 <= row["accuracy"] <= 1 and row["dbi"] > 0 and row["train_time_s"] > 0
    assert row["jac_known"] > 0 and row["jac_unknown"] > 0
    assert row["jac_gap"] == pytest.approx(row["jac_unknown"] - row["jac_known"])
    assert all(isinstance(v, (str, int, float)) for v in row.values())


def _fake_run(calls):
    def run(dataset, split, loss, seed, **kwargs):
        calls.append((dataset, split, seed, loss))
        return {"dataset": dataset, "split": split, "seed": seed, "loss": loss,
                "accuracy": 0.5 + 0.1 * split, "auroc_msp": 0.7 + 0.01 * seed}
    return run


def test_sweep_appends_rows_and_resumes_without_recomputing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "run_osr", _fake_run(calls))
    out = tmp_path / "results.csv"
    first = sweep("toy2d", [0, 1], [0, 1], ["sce", "movr+wd"], out_csv=out)
    assert len(calls) == 8 and len(first) == 8 and len(pd.read_csv(out)) == 8
    calls.clear()
    again = sweep("toy2d", [0, 1], [0, 1], ["sce", "movr+wd"], out_csv=out)
    assert calls == []
    pd.testing.assert_frame_equal(again, first, check_dtype=False)
    # one more seed: only its runs are computed, and appended
    sweep("toy2d", [0, 1], [0, 1, 2], ["sce", "movr+wd"], out_csv=out)
    assert sorted(calls) == [("toy2d", s, 2, loss) for s in (0, 1) for loss in ("movr+wd", "sce")]
    assert len(pd.read_csv(out)) == 12
    calls.clear()
    sweep("toy2d", [0], [0], ["sce"], out_csv=out, resume=False)
    assert len(calls) == 1 and len(pd.read_csv(out)) == 1


def test_summarise_gives_mean_and_std_per_dataset_and_loss(monkeypatch):
    monkeypatch.setattr(experiments, "run_osr", _fake_run([]))
    table = summarise(sweep("digits", [0, 1, 2], [0], ["sce", "ovr"]))
    assert list(table.index) == [("digits", "sce"), ("digits", "ovr")]
    assert table.loc[("digits", "sce"), ("accuracy", "mean")] == pytest.approx(0.6)
    assert table.loc[("digits", "sce"), ("accuracy", "std")] == pytest.approx(0.1)
    assert table.loc[("digits", "sce"), ("runs", "count")] == 3
    assert format_summary(table).loc[("digits", "ovr"), "accuracy"] == "0.600 ± 0.100"


def test_cli_parses_ranges_lists_and_loss_labels():
    assert cli.parse_int_list("0-4") == [0, 1, 2, 3, 4]
    assert cli.parse_int_list("0,2,3") == [0, 2, 3]
    assert cli.parse_int_list("0-1,7") == [0, 1, 7]
    for bad in ("a-b", "", "1,-2"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_int_list(bad)
    args = cli.build_parser().parse_args(
        ["benchmark", "--losses", "sce,movr+aug+wd+ssl", "--splits", "0-2", "--seeds", "1,3"])
    assert args.losses == ["sce", "movr+aug+wd+ssl"] and args.splits == [0, 1, 2]
    assert args.seeds == [1, 3] and args.dataset == "digits"


def test_cli_rejects_unknown_names_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "--losses", "sce,arpl"])
    assert "valid losses: center, intra, movr, ovr, sce" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "imagenet"])
    assert "valid names: toy2d, digits" in capsys.readouterr().err


def test_cli_end_to_end_on_toy2d(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COMPANION_FAST", "1")
    out = tmp_path / "results.csv"
    cli.main(["benchmark", "--dataset", "toy2d", "--losses", "sce,ovr+wd", "--splits", "0",
              "--seeds", "0", "--iterations", "20", "--device", "cpu", "--out", str(out)])
    df = pd.read_csv(out)
    assert sorted(df["loss"]) == ["ovr+wd", "sce"] and (df["iterations"] == 20).all()
    assert df.loc[df["loss"] == "ovr+wd", "weight_decay"].item() == 1e-3
    printed = capsys.readouterr().out
    assert "auroc_jacobian" in printed and "±" in printed

    ckpt = tmp_path / "model.pt"
    cli.main(["train", "--dataset", "toy2d", "--loss", "movr", "--iterations", "20",
              "--device", "cpu", "--out", str(ckpt)])
    cli.main(["evaluate", str(ckpt), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert f"checkpoint: {ckpt}" in printed
    auroc = float(next(line for line in printed.splitlines()
                       if line.startswith("auroc_jacobian")).split()[-1])
    assert 0 <= auroc <= 1 and not math.isnan(auroc)


def test_cli_train_checkpoints_its_state_and_resumes_from_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_FAST", "1")
    out = tmp_path / "model.pt"
    args = ["train", "--dataset", "toy2d", "--loss", "movr+aug", "--iterations", "20",
            "--device", "cpu", "--out", str(out), "--checkpoint-every", "5"]
    cli.main(args)
    uninterrupted = load_checkpoint(out)["model"]
    out.unlink()
    (tmp_path / "model.pt.state").unlink()

    class Interrupted(Exception):
        pass

    def crash_at_step_13(step, model):
        if step == 13:
            raise Interrupted
        return {}

    def fit_that_crashes(model, train_set, config, **kwargs):
        config = dataclasses.replace(config, log_every=1)
        return train.fit(model, train_set, config, callbacks=[crash_at_step_13], **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(experiments, "fit", fit_that_crashes)
        with pytest.raises(Interrupted):
            cli.main(args)
    assert not out.exists() and load_checkpoint(tmp_path / "model.pt.state")["step"] == 10
    cli.main(args + ["--resume"])  # steps 11..20 again, from the state saved at step 10
    resumed = load_checkpoint(out)["model"]
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)

    state = tmp_path / "model.pt.state"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(train.CheckpointError, match="truncated"):
        cli.main(args + ["--resume"])
    with pytest.raises(SystemExit):
        cli.main(args[:-1] + ["-3"])
