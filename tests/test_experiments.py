"""The verbs (build, train, evaluate), sweeps that resume by spec hash and scale out by shards,
and the command line."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from companion import cli, experiments
from companion.experiments import (SCORE_NAMES, ResultsFile, build, evaluate, format_summary,
                                   grid, load_run, merge, save_run, summarise, sweep, train)
from companion.spec import RunSpec
from companion.train import CheckpointError, load_checkpoint, save_checkpoint

REPO = Path(__file__).parents[1]
TOY = dict(dataset="toy2d", iterations=30, batch_size=32)


def toy(label="movr+wd", **fields):
    return RunSpec.parse(label, **{**TOY, **fields})


def test_build_is_seeded_and_train_matches_fit_by_hand():
    spec = toy()
    osr = experiments.load_data(spec)
    a, b = build(spec, osr), build(spec, osr)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))
    assert type(a.head).__name__ == "MOvRHead" and a.head.margin == 0.5
    run = train(spec, osr=osr, device="cpu")
    again = train(spec, device="cpu")
    assert run.losses == again.losses and len(run.losses) == 30
    assert all(torch.equal(x, y) for x, y in zip(run.model.state_dict().values(),
                                                  again.model.state_dict().values()))


def test_head_arguments_reach_the_model():
    run = train(toy("movr:margin=0.2:scale=16:margin_on=signed"), device="cpu")
    head = run.model.head
    assert (head.margin, head.scale, head.margin_on) == (0.2, 16.0, "signed")


def test_evaluate_returns_every_metric_in_range():
    row = experiments.run(toy(split=1), device="cpu")
    assert (row["dataset"], row["split"], row["seed"], row["label"], row["model"]) == \
        ("toy2d", 1, 0, "movr+wd", "mlp")
    assert row["iterations"] == 30 and row["weight_decay"] == 1e-3 and row["augment"] == "none"
    for name in SCORE_NAMES:
        assert 0 <= row[f"auroc_{name}"] <= 1
        assert 0 <= row[f"oscr_{name}"] <= row["accuracy"] + 1e-12  # OSCR <= accuracy
    assert 0 <= row["accuracy"] <= 1 and row["dbi"] > 0 and row["train_time_s"] > 0
    assert row["jac_known"] > 0 and row["jac_unknown"] > 0
    assert row["jac_gap"] == pytest.approx(row["jac_unknown"] - row["jac_known"])
    assert all(isinstance(v, (str, int, float)) for v in row.values())


def test_a_saved_run_is_rebuilt_exactly_from_its_spec(tmp_path):
    spec = toy("movr:margin=0.3+wd")
    run = train(spec, device="cpu")
    save_run(run, tmp_path / "m.pt")
    back = load_run(tmp_path / "m.pt")
    assert back.spec == spec and back.model.head.margin == 0.3
    assert evaluate(back, device="cpu") == evaluate(run, device="cpu")


def test_training_state_files_evaluate_and_foreign_files_are_named(tmp_path):
    run = train(toy(), device="cpu", checkpoint=tmp_path / "m.pt.state")
    state = load_run(tmp_path / "m.pt.state")  # fit's training state carries the spec too
    assert state.spec == run.spec
    assert evaluate(state, device="cpu") == evaluate(run, device="cpu")
    save_checkpoint(run.model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain state_dict, without a run spec"):
        load_run(tmp_path / "plain.pt")


# --------------------------------------------------------------------------------------------------
# sweeps


def _fake_runs(monkeypatch):
    """Replace training by a function of the spec, recording which specs were run."""
    calls = []

    def run(spec, **kwargs):
        calls.append(spec)
        return {**spec.row(), "accuracy": 0.5 + 0.1 * spec.split,
                "auroc_msp": 0.7 + 0.01 * spec.seed + 1e-3 * spec.config.iterations}
    monkeypatch.setattr(experiments, "run", run)
    return calls


def test_sweep_resumes_by_spec_hash_so_changed_settings_are_recomputed(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    out = tmp_path / "results.csv"
    specs = grid(["sce", "movr+wd"], datasets="toy2d", splits=[0, 1], seeds=[0, 1])
    first = sweep(specs, out_csv=out)
    assert len(calls) == 8 and len(first) == 8 and len(pd.read_csv(out)) == 8
    assert list(first["spec"]) == [s.hash for s in specs]
    calls.clear()
    again = sweep(specs, out_csv=out)
    assert calls == []
    pd.testing.assert_frame_equal(again, first)
    # the old bug: other iterations were read back as if they were the same runs
    longer = grid(["sce", "movr+wd"], datasets="toy2d", splits=[0, 1], seeds=[0, 1],
                  iterations=300)
    table = sweep(longer, out_csv=out)
    assert len(calls) == 8 and (table["iterations"] == 300).all()
    assert len(pd.read_csv(out)) == 16
    calls.clear()
    sweep(specs[:1], out_csv=out, resume=False)
    assert len(calls) == 1 and len(pd.read_csv(out)) == 1


def test_duplicates_are_computed_once(monkeypatch):
    calls = _fake_runs(monkeypatch)
    specs = grid(["sce", "sce", "sce+wd=0.001", "sce+wd"], datasets="toy2d", splits=[0, 0])
    assert len(specs) == 2
    assert len(sweep(specs + specs)) == 2 and len(calls) == 2


def test_a_torn_last_row_is_skipped_and_recomputed(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    out = tmp_path / "results.csv"
    specs = grid(["sce", "ovr"], datasets="toy2d", splits=[0, 1])
    sweep(specs, out_csv=out)
    text = out.read_text()
    out.write_text(text[: len(text) - 25])  # a power cut in the middle of the last row
    calls.clear()
    with pytest.warns(UserWarning, match=r"results.csv, line 5: an incomplete row"):
        table = sweep(specs, out_csv=out)
    assert [c.hash for c in calls] == [specs[-1].hash] and len(table) == 4
    assert len(pd.read_csv(out)) == 4  # the file is whole again


def test_a_foreign_csv_is_refused_by_name(tmp_path, monkeypatch):
    _fake_runs(monkeypatch)
    out = tmp_path / "mine.csv"
    out.write_text("name,score\nx,1\n")
    with pytest.raises(ValueError, match="mine.csv is not a companion results file"):
        sweep(grid("sce", datasets="toy2d"), out_csv=out)
    assert out.read_text() == "name,score\nx,1\n"  # untouched


def test_bad_output_paths_fail_before_any_run(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    (tmp_path / "f").write_text("")
    for out in (tmp_path, tmp_path / "f" / "r.csv"):
        with pytest.raises(ValueError):
            sweep(grid("sce", datasets="toy2d"), out_csv=out)
    assert calls == []


def test_shards_partition_the_jobs_and_merge_gives_the_whole_table(tmp_path, monkeypatch):
    _fake_runs(monkeypatch)
    specs = grid(["sce", "ovr", "movr"], datasets="toy2d", splits=[0, 1, 2], seeds=[0, 1])
    whole = sweep(specs, out_csv=tmp_path / "all.csv")
    parts = [sweep(specs, out_csv=tmp_path / f"s{i}.csv", shard=f"{i}/4") for i in range(4)]
    assert sorted(h for p in parts for h in p["spec"]) == sorted(whole["spec"])
    merged = merge([tmp_path / f"s{i}.csv" for i in range(4)], tmp_path / "merged.csv")
    key = lambda df: df.sort_values("spec").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(key(merged), key(whole))
    with pytest.raises(ValueError, match="a shard is i/n with 0 <= i < n"):
        sweep(specs, shard="4/4")


def test_summarise_groups_variants_and_splits_out_differing_settings(monkeypatch):
    _fake_runs(monkeypatch)
    rows = sweep(grid(["sce", "ovr"], datasets="digits", splits=[0, 1, 2]))
    table = summarise(rows)
    assert list(table.index) == [("digits", "small_cnn", "sce"), ("digits", "small_cnn", "ovr")]
    sce = table.loc[("digits", "small_cnn", "sce")]
    assert sce[("accuracy", "mean")] == pytest.approx(0.6)
    assert sce[("accuracy", "std")] == pytest.approx(0.1) and sce[("runs", "count")] == 3
    assert format_summary(table).loc[("digits", "small_cnn", "ovr"), "accuracy"] == \
        "0.600 ± 0.100"
    mixed = pd.concat([rows, sweep(grid("sce", datasets="digits", iterations=7))])
    assert "iterations" in summarise(mixed).index.names


def test_real_sweep_rows_read_back_identically(tmp_path):
    specs = grid(["sce", "ovr"], datasets="toy2d", splits=[0], iterations=20, batch_size=32)
    fresh = sweep(specs, out_csv=tmp_path / "r.csv", device="cpu", progress=False)
    resumed = sweep(specs, out_csv=tmp_path / "r.csv", device="cpu", progress=False)
    pd.testing.assert_frame_equal(fresh, resumed)


def test_submitit_local_executor_runs_shards_and_merges(tmp_path):
    pytest.importorskip("submitit")
    specs = grid(["sce", "ovr"], datasets="toy2d", splits=[0, 1], iterations=20, batch_size=32)
    table = experiments.submit(specs, shards=2, folder=tmp_path, cluster="local", device="cpu",
                               timeout_min=5)
    assert sorted(table["spec"]) == sorted(s.hash for s in specs)
    assert (tmp_path / "results.csv").exists()
    direct = sweep(specs, device="cpu", progress=False)
    metrics = [c for c in direct.columns if c.startswith(("auroc_", "jac_", "accuracy"))]
    key = lambda df: df.sort_values("spec").reset_index(drop=True)[metrics]  # noqa: E731
    pd.testing.assert_frame_equal(key(table), key(direct))


# --------------------------------------------------------------------------------------------------
# Protocol B: validation split, macro-F1, OOD sets, one model per training key


def test_evaluate_with_a_validation_split_adds_macro_f1_for_every_score():
    spec = RunSpec.parse("movr", dataset="digits", split=2, iterations=40, val_fraction=0.2)
    trained = train(spec, device="cpu")
    row = evaluate(trained, device="cpu")
    for name in SCORE_NAMES:
        assert 0 <= row[f"macro_f1_{name}"] <= 1
    # by hand for max_logit: the threshold rejects 10% of the validation knowns
    from companion import metrics
    from companion.train import predict

    osr = trained.osr
    _, logits_v, _ = predict(trained.model, osr.val, device="cpu")
    _, logits_k, labels = predict(trained.model, osr.test_known, device="cpu")
    _, logits_u, _ = predict(trained.model, osr.test_unknown, device="cpu")
    t = metrics.rejection_threshold(logits_v.amax(1), 0.1)
    assert experiments.REJECT_FRACTION == 0.1
    assert (logits_v.amax(1) < t).float().mean() <= 0.1
    expected = metrics.open_set_f1(logits_k.amax(1), logits_k.argmax(1), labels,
                                   logits_u.amax(1), logits_u.argmax(1), threshold=t,
                                   num_classes=osr.num_classes)
    assert row["macro_f1_max_logit"] == expected
    # without a validation split there is no threshold, so no macro-F1 column
    plain = evaluate(train(spec.replace(val_fraction=0.0), device="cpu"), device="cpu")
    assert not [k for k in plain if k.startswith("macro_f1_")]


def test_evaluate_reports_feature_norms_of_the_raw_embedding():
    trained = train(toy(), device="cpu")
    row = evaluate(trained, device="cpu")
    with torch.no_grad():
        z_k = trained.model.embed(trained.osr.test_known.inputs)
        z_u = trained.model.embed(trained.osr.test_unknown.inputs)
    assert row["feat_known"] == pytest.approx(z_k.norm(dim=1).mean().item(), rel=1e-5)
    assert row["feat_unknown"] == pytest.approx(z_u.norm(dim=1).mean().item(), rel=1e-5)
    from companion import metrics

    assert row["auroc_feature_norm"] == pytest.approx(
        metrics.auroc(z_k.norm(dim=1), z_u.norm(dim=1)), abs=1e-6)


def test_a_protocol_b_digits_run_evaluates():
    spec = RunSpec.parse("sce", dataset="digits", ood="photo_crop", val_fraction=0.1,
                         iterations=30)
    row = experiments.run(spec, device="cpu")
    assert (row["ood"], row["val_fraction"], row["split"]) == ("photo_crop", 0.1, 0)
    assert row["spec"] == spec.hash
    for name in SCORE_NAMES:
        assert 0 <= row[f"auroc_{name}"] <= 1 and 0 <= row[f"macro_f1_{name}"] <= 1
    assert row["feat_known"] > 0 and row["feat_unknown"] > 0


def _fake_training(monkeypatch):
    """Replace train / evaluate / load_data by stand-ins; returns the specs trained."""
    trained = []

    def fake_train(spec, **kwargs):
        trained.append(spec)
        return experiments.Run(spec, model=None, osr=None, train_time_s=1.0)

    def fake_evaluate(run, **kwargs):
        row = {"accuracy": 0.9, "auroc_msp": 0.5 + 0.1 * ["photo_crop", "photo_resize",
                                                         None].index(run.spec.ood)}
        if run.spec.val_fraction:
            row["macro_f1_msp"] = 0.4
        return row

    monkeypatch.setattr(experiments, "train", fake_train)
    monkeypatch.setattr(experiments, "evaluate", fake_evaluate)
    monkeypatch.setattr(experiments, "load_data", lambda spec, **kwargs: None)
    return trained


def test_specs_differing_only_in_the_ood_set_share_one_trained_model(tmp_path, monkeypatch):
    trained = _fake_training(monkeypatch)
    specs = grid(["sce", "movr"], datasets="digits", seeds=[0, 1],
                 oods=["photo_crop", "photo_resize"], val_fraction=0.1)
    assert len(specs) == 8 and len(experiments.training_groups(specs)) == 4
    out = tmp_path / "b.csv"
    table = sweep(specs, out_csv=out)
    assert len(trained) == 4  # one model per (label, seed), evaluated on both OOD sets
    assert list(table["spec"]) == [s.hash for s in specs]
    assert list(table["auroc_msp"]) == [0.5, 0.6] * 4
    assert (table["train_time_s"] == 1.0).all()
    trained.clear()
    sweep(specs, out_csv=out)
    assert trained == []  # resumed by hash: nothing trained
    # one row missing: its model is trained again, for that row only
    ResultsFile.write(out, [r for r in ResultsFile(out).rows.values()
                            if r["spec"] != specs[3].hash])
    again = sweep(specs, out_csv=out)
    assert [s.hash for s in trained] == [specs[3].hash] and len(again) == 8


def test_shards_keep_one_models_ood_rows_together(tmp_path, monkeypatch):
    trained = _fake_training(monkeypatch)
    specs = grid(["sce", "ovr", "movr"], datasets="digits", seeds=[0, 1],
                 oods=["photo_crop", "photo_resize"])
    parts = [sweep(specs, out_csv=tmp_path / f"s{i}.csv", shard=(i, 4)) for i in range(4)]
    assert len(trained) == 6  # every model trained once over all shards
    assert sorted(h for p in parts for h in p["spec"]) == sorted(s.hash for s in specs)
    key_of = {s.hash: s.training_key for s in specs}
    keys = [{key_of[h] for h in p["spec"]} for p in parts]
    assert sum(map(len, keys)) == 6  # no training key is split across shards
    # deterministic: the same shard again gives the same specs
    assert list(sweep(specs, shard=(1, 4))["spec"]) == list(parts[1]["spec"])
    # Protocol A specs shard exactly as before: specs i, i+n, ...
    a = grid(["sce", "ovr", "movr"], datasets="digits", splits=[0, 1])
    assert experiments.training_groups(a) == [[s] for s in a]


def test_a_results_file_mixing_rows_with_and_without_validation_reads_back(tmp_path,
                                                                          monkeypatch):
    _fake_training(monkeypatch)
    out = tmp_path / "mixed.csv"
    plain = grid("sce", datasets="digits", seeds=[0, 1], oods="photo_crop")
    with_val = grid("sce", datasets="digits", seeds=[0, 1], oods="photo_crop",
                    val_fraction=0.1)
    sweep(plain, out_csv=out)
    table = sweep(with_val, out_csv=out)  # rows with a macro_f1_ column join the file
    back = ResultsFile(out).rows
    assert len(back) == 4 and set(back) == {s.hash for s in plain + with_val}
    assert pd.isna(back[plain[0].hash]["macro_f1_msp"])
    assert back[with_val[0].hash]["macro_f1_msp"] == 0.4
    everything = merge([out])
    summary = summarise(everything)
    assert "ood" in summary.index.names and "val_fraction" in summary.index.names
    assert ("macro_f1_msp", "mean") in summary.columns
    assert summary[("macro_f1_msp", "mean")].tolist()[-1] == pytest.approx(0.4)
    assert summary[("runs", "count")].tolist() == [2, 2]
    assert len(table) == 2


# --------------------------------------------------------------------------------------------------
# command line


def test_cli_parses_ranges_lists_and_labels():
    assert cli.parse_int_list("0-4") == [0, 1, 2, 3, 4]
    assert cli.parse_int_list("0,2,3") == [0, 2, 3]
    assert cli.parse_int_list("0-1,7") == [0, 1, 7]
    args = cli.build_parser().parse_args(
        ["sweep", "--losses", "sce,movr:margin=0.3+aug+wd+ssl", "--splits", "0-2",
         "--seeds", "1,3", "--margin-on", "all", "--iterations", "9", "--weight-decay", "5e-4"])
    specs = cli._specs(args)
    assert len(specs) == 12 and {s.config.iterations for s in specs} == {9}
    movr = [s for s in specs if s.head == "movr"][0]
    assert movr.label == "movr:margin=0.3:margin_on=all+aug+wd=0.0005+ssl"
    assert cli.build_parser().parse_args(["benchmark"]).run is cli._run_sweep


def test_cli_protocol_b_options_make_the_specs():
    args = cli.build_parser().parse_args(
        ["sweep", "--losses", "sce,movr", "--seeds", "0-1", "--ood", "photo_crop,photo_resize",
         "--val-fraction", "0.1"])
    specs = cli._specs(args)
    assert len(specs) == 8 and {s.split for s in specs} == {0}  # one split with --ood
    assert [s.ood for s in specs[:2]] == ["photo_crop", "photo_resize"]
    assert {s.val_fraction for s in specs} == {0.1}
    assert len({s.training_key for s in specs}) == 4
    plain = cli._specs(cli.build_parser().parse_args(["sweep", "--val-fraction", "0.2"]))
    assert {s.split for s in plain} == {0, 1, 2, 3, 4} and {s.ood for s in plain} == {None}
    (one,) = cli._specs(cli.build_parser().parse_args(
        ["train", "--ood", "photo_resize", "--val-fraction", "0.1"]))
    assert (one.ood, one.val_fraction, one.split) == ("photo_resize", 0.1, 0)


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--losses", "sce,arpl"], "valid losses: center, intra, movr, ovr, sce"),
    (["train", "--dataset", "imagenet"], "valid names: toy2d, digits"),
    (["train", "--split", "7"], "split must be an integer in 0..4, got 7"),
    (["train", "--loss", "sce,movr"], "expected one loss label"),
    (["train", "--loss", "sce", "--weight-decay", "1e-3"], "applies to none of the losses sce"),
    (["train", "--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["train", "--momentum", "1.5"], r"momentum must be in \[0, 1\)"),
    (["train", "--margin", "0.3"], "--margin applies to none of the losses sce"),
    (["evaluate", "nope.pt"], "no checkpoint at nope.pt"),
    (["sweep", "--shard", "3/2"], "a shard is i/n"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--ood", "lsun_crop"], "valid for digits: photo_crop, photo_resize"),
    (["train", "--ood", "isun"], "unknown OOD set 'isun'; valid names: imagenet_crop"),
    (["sweep", "--ood", "photo_crop,photo_resize", "--splits", "0-4"],
     "--ood makes every class known, so there is one split"),
    (["train", "--val-fraction", "1"], r"must be a number in \[0, 1\), got '1'"),
    (["train", "--ood", "photo_crop,photo_resize"], "expected one OOD set"),
])
def test_cli_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert pytest.importorskip("re").search(message, err), err


def test_cli_train_refuses_bad_output_paths_before_training(tmp_path, capsys):
    for out in (tmp_path, tmp_path / "x.pt" / "y.pt"):
        (tmp_path / "x.pt").write_text("")
        started = time.perf_counter()
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", "--dataset", "toy2d", "--out", str(out)])
        assert exit_.value.code == 2 and time.perf_counter() - started < 5


def test_cli_diverged_training_exits_1_without_saving(tmp_path, capsys):
    out = tmp_path / "m.pt"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--dataset", "toy2d", "--lr", "1e6", "--iterations", "50",
                  "--device", "cpu", "--out", str(out)])
    assert exit_.value.code == 1 and not out.exists()
    assert "training diverged" in capsys.readouterr().err


def test_cli_end_to_end_on_toy2d(tmp_path, capsys):
    out = tmp_path / "results.csv"
    cli.main(["sweep", "--dataset", "toy2d", "--losses", "sce,ovr+wd", "--splits", "0",
              "--seeds", "0", "--iterations", "20", "--device", "cpu", "--out", str(out)])
    df = pd.read_csv(out)
    assert sorted(df["label"]) == ["ovr+wd", "sce"] and (df["iterations"] == 20).all()
    assert df.loc[df["label"] == "ovr+wd", "weight_decay"].item() == 1e-3
    printed = capsys.readouterr().out
    assert "auroc_jacobian" in printed and "±" in printed

    ckpt = tmp_path / "model.pt"
    cli.main(["train", "--dataset", "toy2d", "--loss", "movr", "--margin", "0.3",
              "--iterations", "20", "--device", "cpu", "--out", str(ckpt)])
    cli.main(["evaluate", str(ckpt), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert f"saved: {ckpt}" in printed
    assert "movr:margin=0.3" in printed
    auroc = float(next(line for line in printed.splitlines()
                       if line.startswith("auroc_jacobian")).split()[-1])
    assert 0 <= auroc <= 1


def test_cli_protocol_b_train_then_evaluate_on_another_ood_set(tmp_path, capsys):
    ckpt = tmp_path / "b.pt"
    cli.main(["train", "--dataset", "digits", "--loss", "sce", "--ood", "photo_crop",
              "--val-fraction", "0.1", "--iterations", "10", "--device", "cpu",
              "--out", str(ckpt)])
    cli.main(["evaluate", str(ckpt), "--ood", "photo_resize", "--device", "cpu"])
    printed = capsys.readouterr().out
    lines = dict(parts for line in printed.splitlines()[1:]
                 if len(parts := line.split(None, 1)) == 2)
    assert lines["ood"].strip() == "photo_resize" and lines["val_fraction"].strip() == "0.1000"
    assert 0 <= float(lines["macro_f1_jacobian"]) <= 1
    # a Protocol A model knows only its split's classes: it has no Protocol B to evaluate
    plain = tmp_path / "a.pt"
    cli.main(["train", "--dataset", "digits", "--iterations", "2", "--device", "cpu",
              "--out", str(plain)])
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", str(plain), "--ood", "photo_crop", "--device", "cpu"])
    assert exit_.value.code == 2
    assert "--ood needs a model trained for Protocol B" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# kill -9 at random points, resume, compare


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "companion", *map(str, args)]


_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run_with_kills(argv: list[str], kills: int, seed: int) -> int:
    """Start ``argv``, SIGKILL it at random moments ``kills`` times (restarting it each time),
    then let it finish; returns how many kills landed before it finished."""
    rng = random.Random(seed)
    landed = 0
    for _ in range(kills):
        proc = subprocess.Popen(argv, cwd=REPO, env=_ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 5.0))
        if proc.poll() is not None:
            return landed
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed += 1
    subprocess.run(argv, cwd=REPO, env=_ENV, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return landed


def test_kill_9_during_train_then_resume_gives_the_uninterrupted_weights(tmp_path):
    common = ["train", "--dataset", "toy2d", "--loss", "movr+wd", "--iterations", "3000",
              "--device", "cpu", "--checkpoint-every", "25"]
    subprocess.run(_cli(*common, "--out", tmp_path / "ref.pt"), cwd=REPO, env=_ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    landed = _run_with_kills(_cli(*common, "--out", tmp_path / "k.pt", "--resume"),
                             kills=3, seed=0)
    assert landed >= 1, "no kill landed during training: lengthen the run"
    ref, got = (load_checkpoint(tmp_path / f"{n}.pt")["model"] for n in ("ref", "k"))
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert not list(tmp_path.glob(".*.tmp"))


def test_kill_9_during_a_sharded_sweep_then_resume_gives_the_unsharded_table(tmp_path):
    common = ["sweep", "--dataset", "toy2d", "--losses", "sce,movr", "--splits", "0-2",
              "--iterations", "400", "--device", "cpu"]
    subprocess.run(_cli(*common, "--out", tmp_path / "all.csv"), cwd=REPO, env=_ENV,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    landed = sum(_run_with_kills(_cli(*common, "--shard", f"{i}/3", "--out",
                                      tmp_path / f"s{i}.csv"), kills=2, seed=i)
                 for i in range(3))
    assert landed >= 1
    merged = merge([tmp_path / f"s{i}.csv" for i in range(3)])
    whole = ResultsFile(tmp_path / "all.csv")
    whole = pd.DataFrame(list(whole.rows.values()))
    timing = ["train_time_s"]
    key = lambda df: df.drop(columns=timing).sort_values("spec").reset_index(drop=True)  # noqa
    pd.testing.assert_frame_equal(key(merged), key(experiments._read_back(whole)))


@pytest.mark.parametrize("spec_hash", ["81399439e483", "000000000012", "0000000000e1"])
def test_a_spec_hash_that_looks_like_a_number_reads_back_as_written(tmp_path, spec_hash):
    # pandas guesses column types: left alone, "81399439e483" became inf and a resume
    # recomputed the row (found by chapter 8's shard files).
    out = tmp_path / "one.csv"
    ResultsFile.write(out, [{"spec": spec_hash, "label": "sce", "auroc_msp": 0.5}])
    assert list(ResultsFile(out).rows) == [spec_hash]
    assert merge([out])["spec"].tolist() == [spec_hash]
