"""NeuNeu data, baselines, protocol, CLI and notebook (issue 7, part 2).

Hand-made tables check the sampler and the 20 % protocol exactly; the OLMo ladder in
``../shared/data`` checks the loader; one tiny training run checks the CLI round trip and another
the backtest adapter; the notebook runs under nbclient.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxscale.neuneu.baselines import context_law_baseline, last_value_baseline, logistic_baseline
from jaxscale.neuneu.protocol import (
    NeuNeuMethod, NeuNeuSplit, calibrate_interval_scale, calibration_split, held_out_family, held_out_runs,
    held_out_tasks, neuneu_backtest, summarize,
)
from jaxscale.neuneu.samples import (
    OLMO_RC_TASKS, FeatureNormalizer, Trajectories, TrajectorySampler, evaluation_batch, histogram_features,
    lm_loss_features, olmo_task_group,
)

REPO = Path(__file__).resolve().parents[1]


def _table(n_runs: int = 4, n_tasks: int = 3, n_ckpt: int = 12, seed: int = 0) -> pd.DataFrame:
    """Logistic-in-log-tokens accuracy curves with a task-loss feature; x doubles per checkpoint."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_runs):
        for k in range(n_tasks):
            x = 1e9 * 2.0 ** np.arange(n_ckpt)
            z = np.log(x / 1e9) - 3.0 - 0.5 * k + 0.3 * r
            acc = 0.25 + 0.5 / (1 + np.exp(-z)) + 0.005 * rng.standard_normal(n_ckpt)
            bpb = 2.0 - 0.1 * np.log(x / 1e9) + 0.2 * k
            rows.append(pd.DataFrame({"run": f"r{r}", "task": f"t{k}", "D": x, "acc": acc, "bpb": bpb,
                                      "size": f"s{r}"}))
    return pd.concat(rows, ignore_index=True)


def _index_table(n_ckpt: int = 16) -> Trajectories:
    """One trajectory whose accuracy encodes the checkpoint index (acc = index / 100) and whose
    log-tokens are the index (x = e^index), so batches can be decoded exactly."""
    idx = np.arange(n_ckpt)
    df = pd.DataFrame({"run": "r", "task": "t", "D": np.exp(idx + 1.0), "acc": idx / 100.0})
    return Trajectories.from_frame(df, x="D", y="acc")


# --------------------------------------------------------------------------- trajectories
def test_from_frame_builds_padded_trajectories():
    df = _table(n_runs=2, n_tasks=2)
    df = df[~((df.run == "r1") & (df.task == "t1") & (df.D > 1e11))]  # a shorter trajectory
    traj = Trajectories.from_frame(df, x="D", y="acc", features=["bpb"], run_columns=["size"])
    assert traj.n_trajectories == 4 and traj.gap_unit == "log_tokens"
    assert traj.length.tolist() == [12, 12, 12, 7]
    assert np.isnan(traj.y[3, 7:]).all() and np.isfinite(traj.y[3, :7]).all()
    np.testing.assert_allclose(traj.pos[0, :12], np.log(1e9 * 2.0 ** np.arange(12)))
    assert traj.runs.loc["r1", "size"] == "s1"
    back = traj.to_frame()
    assert len(back) == len(df) and set(back.columns) >= {"run", "task", "D", "acc", "bpb"}


def test_without_x_gaps_count_checkpoints():
    df = _table(n_runs=1, n_tasks=1).drop(columns="D")
    traj = Trajectories.from_frame(df, x=None, y="acc")
    assert traj.gap_unit == "index"
    batch, index = evaluation_batch(traj, context_length=8)
    assert batch.ctx_mask.sum(1).tolist() == [3] * 9  # ceil(0.2 * 12) context points
    assert (batch.ctx_gap[:, :2] == 1.0).all()
    np.testing.assert_array_equal(batch.ctx_gap[:, 2], index.target_index - index.ctx_end)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.assign(acc=d.acc.where(d.index != 5)), r"column 'acc' has a missing value \(run 'r0', task 't0'"),
    (lambda d: d.assign(bpb=d.bpb.where(d.index != 14)), r"feature column 'bpb' .*run 'r0', task 't1'"),
    (lambda d: d.iloc[[1, 0] + list(range(2, len(d)))], r"'D' is not sorted within run 'r0', task 't0'"),
    (lambda d: pd.concat([d.iloc[:1], d]).reset_index(drop=True), r"duplicate value .*run 'r0', task 't0'"),
    (lambda d: d[~((d.run == "r1") & (d.task == "t2") & (d.D > 1e9))], r"run 'r1', task 't2' has 1 checkpoint"),
    (lambda d: d.assign(D=d.D.where(d.index != 3, 0.0)), r"'D' must be > 0"),
])
def test_bad_input_errors_name_the_column_run_and_task(mutate, match):
    with pytest.raises(ValueError, match=match):
        Trajectories.from_frame(mutate(_table(n_runs=2)), x="D", y="acc", features=["bpb"])


def test_missing_column_is_a_key_error():
    with pytest.raises(KeyError, match="'accuracy' not in the table"):
        Trajectories.from_frame(_table(), x="D", y="accuracy")


def test_feature_helpers():
    lm = pd.DataFrame({"run": "a", "D": [1.0, 1.0, 2.0, 2.0], "dataset": ["c4", "pile"] * 2,
                       "loss": [4.0, 6.0, 3.0, 5.0]})
    out = lm_loss_features(lm)
    np.testing.assert_allclose(out["log_avg_loss"], np.log([5.0, 4.0]))
    h = pd.DataFrame({"run": "r", "step": [0, 0, 10, 10], "bin": [1, 0, 0, 1], "mass": [0.1, 0.9, 0.4, 0.6]})
    wide = histogram_features(h)
    assert wide[["h0", "h1"]].to_numpy().tolist() == [[0.9, 0.1], [0.4, 0.6]]
    # a histogram frame feeds Trajectories as per-checkpoint run features (merged on run and x)
    wide = wide.assign(step=[1, 10])
    df = pd.DataFrame({"run": "r", "task": "t", "step": [1, 10], "acc": [0.3, 0.5]})
    traj = Trajectories.from_frame(df, x="step", y="acc", x_unit="x", run_features=wide)
    assert traj.feature_names == ("h0", "h1") and traj.gap_unit == "log_x"


def test_from_lm_eval_result_files(tmp_path):
    for i, acc in enumerate([0.55, 0.6, 0.64], start=1):
        doc = {"results": {"piqa": {"acc,none": acc, "acc_stderr,none": 0.01},
                           "arc_easy": {"acc,none": acc - 0.1, "acc_norm,none": acc - 0.05}},
               "config": {"model_args": f"pretrained=org/m,revision=step{i}000-tokens{i}B"}}
        (tmp_path / f"r{i}.json").write_text(json.dumps(doc))
    traj = Trajectories.from_lm_eval(tmp_path)
    assert sorted(traj.keys.task) == ["arc_easy", "piqa"] and traj.gap_unit == "log_tokens"
    np.testing.assert_allclose(traj.x[0], [1e9, 2e9, 3e9])
    np.testing.assert_allclose(traj.y[traj.keys.task.tolist().index("piqa")], [0.55, 0.6, 0.64])
    by_step = Trajectories.from_lm_eval(tmp_path, metric="acc_norm", x="step")
    assert by_step.keys.task.tolist() == ["arc_easy"] and by_step.gap_unit == "log_x"
    with pytest.raises(ValueError, match="no lm-eval results with metric 'f1'"):
        Trajectories.from_lm_eval(tmp_path, metric="f1")


# --------------------------------------------------------------------------- the sampler
def test_sampler_shapes_and_determinism():
    traj = Trajectories.from_frame(_table(), x="D", y="acc", features=["bpb"])
    sampler = TrajectorySampler(traj, batch_size=32, context_length=8, seed=3)
    a, b, c = sampler(5), sampler(5), sampler(6)
    assert a.ctx_y.shape == (32, 8) and a.ctx_gap.shape == (32, 8) and a.ctx_mask.shape == (32, 8)
    assert a.features.shape == (32, sampler.n_features) and sampler.n_features == 3  # target, 2 deltas
    assert a.target.shape == (32,) and a.weight.tolist() == [1.0] * 32
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.ctx_y, c.ctx_y)
    other = TrajectorySampler(traj, batch_size=32, context_length=8, seed=4)
    assert not np.array_equal(a.target, other(5).target)
    assert a.ctx_mask[:, 0].all()  # left-aligned: every row has a context point


def _decode(batch):
    """Checkpoint indices of the kept context points and of the target (acc = index / 100)."""
    ctx = np.where(batch.ctx_mask, np.rint(batch.ctx_y * 100), -1).astype(int)
    return ctx, np.rint(batch.target * 100).astype(int)


def test_dropping_keeps_the_last_context_point_and_targets_follow_it():
    traj = _index_table(40)
    dense = TrajectorySampler(traj, batch_size=256, context_length=64, seed=1, drop_prob=0.0)
    sparse = TrajectorySampler(traj, batch_size=256, context_length=64, seed=1, drop_prob=0.9)
    for step in range(3):
        d_ctx, d_tgt = _decode(dense(step))
        s_ctx, s_tgt = _decode(sparse(step))
        last_dense, last_sparse = d_ctx.max(axis=1), s_ctx.max(axis=1)
        np.testing.assert_array_equal(last_dense, last_sparse)  # the context end is never dropped
        np.testing.assert_array_equal(d_tgt, s_tgt)
        assert (s_tgt > last_sparse).all()  # no target at or before the context end
        assert (s_ctx >= 0).sum() < (d_ctx >= 0).sum()  # but intermediate points were dropped
        # dense: all points 0..c kept, in time order
        n = (d_ctx >= 0).sum(1)
        assert (n == last_dense + 1).all()


def test_gaps_are_log_token_differences():
    traj = _index_table(20)  # log x = index + 1
    sampler = TrajectorySampler(traj, batch_size=64, context_length=6, seed=0, drop_prob=0.5)
    batch = sampler(0)
    ctx, tgt = _decode(batch)
    for i in range(64):
        kept = ctx[i][ctx[i] >= 0]
        assert len(kept) <= 6
        nxt = np.append(kept[1:], tgt[i])
        np.testing.assert_allclose(batch.ctx_gap[i, : len(kept)], nxt - kept, atol=1e-5)
        assert (batch.ctx_gap[i, len(kept):] == 0).all()
    # the context is truncated to the latest `context_length` kept points
    long = TrajectorySampler(traj, batch_size=64, context_length=3, seed=0, drop_prob=0.0)(1)
    c, _ = _decode(long)
    kept = c[c[:, 2] >= 0]
    assert (np.diff(kept, axis=1) == 1).all()


def test_max_query_gap_and_context_fraction_bound_the_samples():
    traj = _index_table(40)
    s = TrajectorySampler(traj, batch_size=512, context_length=64, seed=0, drop_prob=0.0, max_query_gap=3,
                          max_context_fraction=0.25)
    ctx, tgt = _decode(s(0))
    end = ctx.max(axis=1)
    assert (tgt - end <= 3).all() and (tgt - end >= 1).all() and (end <= 9).all()


def test_features_are_normalised_with_training_statistics_only():
    df = _table()
    train = Trajectories.from_frame(df[df.run.isin(["r0", "r1"])], x="D", y="acc", features=["bpb"])
    test = Trajectories.from_frame(df[df.run.isin(["r2", "r3"])].assign(bpb=lambda d: d.bpb * 10 + 5),
                                   x="D", y="acc", features=["bpb"])
    sampler = TrajectorySampler(train, batch_size=16, context_length=8, seed=0)
    raw = df[df.run.isin(["r0", "r1"])].bpb
    assert sampler.normalizer.mean[0] == pytest.approx(raw.mean())
    assert sampler.normalizer.std[0] == pytest.approx(raw.std(ddof=0))
    batch, index = evaluation_batch(test, context_length=8, normalizer=sampler.normalizer)
    expected = (index["bpb"].to_numpy() - raw.mean()) / raw.std(ddof=0)
    np.testing.assert_allclose(batch.features[:, 0], expected, rtol=1e-5)
    assert abs(batch.features[:, 0].mean()) > 5  # test statistics were not used
    with pytest.raises(ValueError, match="training normaliser"):
        evaluation_batch(test, context_length=8)
    again = FeatureNormalizer.from_dict(json.loads(json.dumps(sampler.normalizer.to_dict())))
    assert again == sampler.normalizer


def test_residual_mode_reads_and_predicts_deviations_from_a_feature():
    df = _table(n_runs=1, n_tasks=1).assign(prior=lambda d: d.acc - 0.05)
    traj = Trajectories.from_frame(df, x="D", y="acc", features=["prior"])
    batch, index = evaluation_batch(traj, context_length=4, normalizer=traj.fit_normalizer(), residual="prior")
    np.testing.assert_allclose(batch.target, 0.55, atol=1e-6)
    np.testing.assert_allclose(batch.ctx_y[batch.ctx_mask], 0.55, atol=1e-6)
    sampler = TrajectorySampler(traj, batch_size=8, context_length=4, seed=0, residual="prior")
    np.testing.assert_allclose(sampler(0).target, 0.55, atol=1e-6)
    with pytest.raises(ValueError, match="residual feature 'nope'"):
        TrajectorySampler(traj, batch_size=8, context_length=4, seed=0, residual="nope")


def test_context_features_are_each_points_features_minus_the_targets():
    df = _table(n_runs=1, n_tasks=1)
    traj = Trajectories.from_frame(df, x="D", y="acc", features=["bpb"])
    norm = traj.fit_normalizer()
    batch, index = evaluation_batch(traj, context_length=4, normalizer=norm, ctx_features=("bpb",))
    assert batch.ctx_features.shape == (len(index), 4, 1)
    raw = traj.features[0, :, 0]
    z = (raw - norm.mean[0]) / norm.std[0]
    n_ctx = int(index.ctx_end.iloc[0]) + 1  # 3 context points of 12, padded to 4
    want = z[:n_ctx][None, :] - z[index.target_index.to_numpy()][:, None]
    np.testing.assert_allclose(batch.ctx_features[:, :n_ctx, 0], want, rtol=1e-5, atol=1e-6)
    assert (batch.ctx_features[:, n_ctx:] == 0).all()
    assert evaluation_batch(traj, context_length=4, normalizer=norm)[0].ctx_features.shape == (len(index), 4, 0)
    sampler = TrajectorySampler(traj, batch_size=8, context_length=4, seed=0, ctx_features=["bpb"])
    b = sampler(0)
    assert sampler.n_ctx_features == 1 and b.ctx_features.shape == (8, 4, 1)
    assert (b.ctx_features[~b.ctx_mask] == 0).all()
    with pytest.raises(ValueError, match="per-context-point feature"):
        TrajectorySampler(traj, batch_size=8, context_length=4, seed=0, ctx_features=["nope"])


def test_loss_priors_average_one_logistic_law_per_loss():
    from jaxscale.neuneu.baselines import with_logistic_prior, with_loss_priors

    df = _table(n_runs=3, n_tasks=2).assign(bpb2=lambda d: 1.5 * d.bpb)
    traj = Trajectories.from_frame(df, x="D", y="acc", features=["bpb", "bpb2"])
    out = with_loss_priors(traj, traj, loss_features=("bpb", "bpb2"))
    assert out.feature_names == ("bpb", "bpb2", "logistic_prior_bpb", "logistic_prior_bpb2", "logistic_prior")
    valid = np.arange(out.x.shape[1]) < out.length[:, None]
    f = out.features[valid]
    np.testing.assert_allclose(f[:, 4], f[:, 2:4].mean(axis=1))
    single = with_loss_priors(traj, traj, loss_features=("bpb",))
    np.testing.assert_allclose(single.features[valid][:, 2],
                               with_logistic_prior(traj, traj, loss_feature="bpb").features[valid][:, 2])


def test_simplex_least_squares_matches_a_brute_force_search():
    from jaxscale.neuneu.baselines import simplex_least_squares

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    w_true = np.array([0.2, 0.0, 0.8])
    np.testing.assert_allclose(simplex_least_squares(X, X @ w_true), w_true, atol=1e-9)
    # the unconstrained solution (2, -1, 0) is off the simplex: compare with a fine grid over it
    y = X @ np.array([2.0, -1.0, 0.0]) + 0.1 * rng.normal(size=40)
    w = simplex_least_squares(X, y)
    assert (w >= 0).all() and np.isclose(w.sum(), 1.0)
    g = np.linspace(0.0, 1.0, 201)
    grid = np.array([(a, b, 1.0 - a - b) for a in g for b in g if a + b <= 1.0 + 1e-12])
    best = np.min(((X @ grid.T - y[:, None]) ** 2).sum(axis=0))
    assert np.sum((X @ w - y) ** 2) <= best + 1e-9


def test_stacked_priors_weight_the_prior_that_transfers_across_sizes():
    from jaxscale.neuneu.baselines import with_loss_priors

    df = _table(n_runs=4, n_tasks=2)
    # "good": a loss that carries the run's shift (the accuracy is an exact logistic of it); "bpb" does not
    k, r = df.task.str[1:].astype(int), df.run.str[1:].astype(int)
    df["good"] = -(np.log(df.D / 1e9) - 3.0 - 0.5 * k + 0.3 * r)
    traj = Trajectories.from_frame(df, x="D", y="acc", features=["bpb", "good"], run_columns=["size"])
    out = with_loss_priors(traj, traj, loss_features=("bpb", "good"), combine="stack")
    w = out.runs.attrs["prior_weights"]
    assert list(w.columns) == ["bpb", "good"] and sorted(w.index) == ["t0", "t1"]
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w["good"] > 0.9).all()
    valid = np.arange(out.x.shape[1]) < out.length[:, None]
    wt = w.reindex(out.keys["task"]).to_numpy()
    want = (out.features[:, :, 2:4] * wt[:, None, :]).sum(axis=2)
    np.testing.assert_allclose(out.features[:, :, 4][valid], want[valid])
    # the stacked prior is closer to the accuracy than the plain mean
    mean = with_loss_priors(traj, traj, loss_features=("bpb", "good"))
    err = lambda t: np.abs(t.features[:, :, -1] - t.y)[valid].mean()  # noqa: E731
    assert err(out) < err(mean)
    # priors already cross-fitted across sizes are reused for the weights: the same as fitting them afresh
    from jaxscale.neuneu.baselines import stacking_weights

    crossed = with_loss_priors(traj, traj, loss_features=("bpb", "good"), combine="stack", cross_fit="size")
    pd.testing.assert_frame_equal(crossed.runs.attrs["prior_weights"],
                                  stacking_weights(traj, loss_features=("bpb", "good")))
    # a single size cannot be cross-fitted: equal weights, i.e. the mean
    one = traj.subset(runs=["r0"])
    np.testing.assert_allclose(with_loss_priors(one, one, loss_features=("bpb", "good"), combine="stack")
                               .runs.attrs["prior_weights"].to_numpy(), 0.5)
    with pytest.raises(ValueError, match="combine"):
        with_loss_priors(traj, traj, loss_features=("bpb", "good"), combine="median")
    no_size = Trajectories.from_frame(df, x="D", y="acc", features=["bpb", "good"])
    with pytest.raises(ValueError, match="run column 'size'"):
        with_loss_priors(no_size, no_size, loss_features=("bpb", "good"), combine="stack")


def test_cross_fitted_prior_from_smaller_groups_only():
    from jaxscale.neuneu.baselines import with_logistic_prior

    df = _table(n_runs=4, n_tasks=2).assign(N=lambda d: d.run.str[1:].astype(int))
    traj = Trajectories.from_frame(df, x="D", y="acc", features=["bpb"], run_columns=["size", "N"])
    below = with_logistic_prior(traj, traj, loss_feature="bpb", cross_fit="N", cross_fit_from="below")
    others = with_logistic_prior(traj, traj, loss_feature="bpb", cross_fit="N")

    def prior(t: Trajectories, run: str) -> np.ndarray:
        rows = (t.keys["run"] == run).to_numpy()
        return t.features[rows, :, -1]

    # r2's prior is fitted on r0 and r1 only (upward extrapolation); r0, the smallest, on every other run
    direct = with_logistic_prior(traj.subset(runs=["r2"]), traj.subset(runs=["r0", "r1"]), loss_feature="bpb")
    np.testing.assert_allclose(prior(below, "r2"), prior(direct, "r2"), rtol=1e-6)
    np.testing.assert_allclose(prior(below, "r0"), prior(others, "r0"), rtol=1e-6)
    assert not np.allclose(prior(below, "r2"), prior(others, "r2"))
    with pytest.raises(ValueError, match="cross_fit_from"):
        with_logistic_prior(traj, traj, loss_feature="bpb", cross_fit="N", cross_fit_from="above")


def test_evaluation_batch_follows_the_20_percent_protocol():
    df = _table(n_runs=1, n_tasks=2, n_ckpt=10)
    df = df[~((df.task == "t1") & (df.D > 1e9 * 2 ** 6.5))]  # t1: 7 checkpoints
    traj = Trajectories.from_frame(df, x="D", y="acc")
    batch, index = evaluation_batch(traj, context_length=4)
    # t0: ceil(2.0) = 2 context points, 8 targets; t1: ceil(1.4) = 2 context points, 5 targets
    assert len(index) == 13 and batch.ctx_y.shape == (13, 4)
    assert index.groupby("task").size().to_dict() == {"t0": 8, "t1": 5}
    assert (index.ctx_end == 1).all() and (index.target_index > index.ctx_end).all()
    assert index.groupby("task").target_index.apply(list).to_dict() == {"t0": list(range(2, 10)),
                                                                       "t1": list(range(2, 7))}
    assert batch.ctx_mask.sum(1).tolist() == [2] * 13  # nothing dropped
    np.testing.assert_allclose(batch.target, index.y.to_numpy(), rtol=1e-6)
    last_gap = batch.ctx_gap[:, 1]
    np.testing.assert_allclose(last_gap, np.log(index.x / index.x_ctx_end), rtol=1e-5)


# --------------------------------------------------------------------------- OLMo
def test_olmo_trajectories_from_shared_data(data_dir):
    traj = Trajectories.from_olmo(data_dir)
    assert traj.n_trajectories == 30 * 20 and set(traj.keys.task) == set(OLMO_RC_TASKS)
    assert traj.feature_names == ("bpb", "log_avg_loss") and traj.gap_unit == "log_tokens"
    assert np.isfinite(traj.features[np.arange(traj.x.shape[1]) < traj.length[:, None]]).all()
    assert traj.length.max() == 202 and traj.length.min() == 37
    assert set(traj.runs["size"]) == {"190M", "370M", "760M", "1.3B", "3.2B"}
    one = traj.subset(runs=["1B-5xC"], tasks=["hellaswag_val_5shot"])
    assert one.y[0, one.length[0] - 1] > one.y[0, 0] + 0.2  # hellaswag improves along the run
    avg = Trajectories.from_olmo(data_dir, runs=["190M-1xC", "peteish13"], tasks=["piqa_val_5shot"],
                                 mmlu_average=True, features=("bpb",))
    assert set(avg.keys.task) == {"piqa_val_5shot", "mmlu_avg_val_5shot", "mmlu_avg_test_5shot"}
    assert set(avg.runs.family) == {"ladder", "olmo2"} and (avg.x[np.isfinite(avg.x)] > 0).all()
    with pytest.raises(ValueError, match="unknown OLMo task"):
        Trajectories.from_olmo(data_dir, tasks=["nope"])


def test_splits_never_leak(data_dir):
    traj = Trajectories.from_olmo(data_dir, features=("log_avg_loss",))
    runs = held_out_runs(traj)
    assert set(runs.test_runs) == {r for r in traj.runs.index if r.startswith(("1B", "3B"))}
    assert not set(runs.train_runs) & set(runs.test_runs) and runs.baseline_runs == runs.train_runs
    xc = held_out_runs(traj, by="xC")
    assert all(traj.runs.loc[r, "xC"] in (5.0, 10.0) for r in xc.test_runs)
    assert "190M-1xC-rerun" in xc.train_runs  # re-runs go with their 1xC run
    tasks = held_out_tasks(traj, test_groups=["mmlu", "piqa"])
    train, test, base = tasks.parts(traj)
    seen = {olmo_task_group(t) for t in train.keys.task}
    assert not seen & {"mmlu", "piqa"} and set(test.keys.task) == set(tasks.test_tasks)
    assert len(tasks.test_tasks) == 9 and not set(base.keys.run) & set(test.keys.run)
    # training batches only ever hold training trajectories
    sampler = TrajectorySampler(train, batch_size=64, context_length=8, seed=0)
    assert not {olmo_task_group(t) for t in sampler.trajectories.keys.task} & {"mmlu", "piqa"}
    leaky = dataclasses.replace(tasks, train_tasks=tasks.train_tasks + ("mmlu_stem_val_5shot",))
    with pytest.raises(ValueError, match="leaks tasks"):
        leaky.check()
    with pytest.raises(ValueError, match="leaks runs"):
        dataclasses.replace(runs, train_runs=runs.train_runs + (runs.test_runs[0],)).check()
    drawn = held_out_tasks(traj, n_test=3, seed=1)
    assert len({olmo_task_group(t) for t in drawn.test_tasks}) == 3
    # held-out family: the ladder trains, the OLMo-2 runs are tested; without them a clear error
    with pytest.raises(ValueError, match="no run of family 'olmo2'"):
        held_out_family(traj)
    both = Trajectories.from_olmo(data_dir, runs=list(traj.runs.index) + ["peteish7", "peteish13"],
                                  features=("log_avg_loss",))
    fam = held_out_family(both)
    assert fam.test_runs == ("peteish13", "peteish7") and set(fam.train_runs) == set(traj.runs.index)
    assert fam.baseline_runs == fam.train_runs and fam.test_tasks == fam.train_tasks
    assert {both.runs.loc[r, "size"] for r in calibration_split(fam, both).test_runs} == {"3.2B"}
    # interval calibration only ever uses the training part
    cal = calibration_split(runs, traj)
    assert {traj.runs.loc[r, "size"] for r in cal.test_runs} == {"760M"}
    assert set(cal.train_runs) | set(cal.test_runs) <= set(runs.train_runs)
    cal = calibration_split(tasks, traj)
    assert set(cal.test_tasks) < set(tasks.train_tasks) and not set(cal.test_tasks) & set(cal.train_tasks)
    assert not {olmo_task_group(t) for t in cal.train_tasks} & {olmo_task_group(t) for t in cal.test_tasks}


def test_interval_calibration_scale():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(20_000)
    t = pd.DataFrame({"y": y, "prediction": 0.0, "q0.1": -0.5, "q0.9": 0.5})  # far too narrow
    s = calibrate_interval_scale(t)
    assert s == pytest.approx(1.2816 / 0.5, rel=0.03)  # the normal's 90 % quantile
    covered = np.mean(np.abs(y) <= 0.5 * s)
    assert covered == pytest.approx(0.8, abs=0.005)


# --------------------------------------------------------------------------- baselines
def test_logistic_baseline_recovers_a_known_logistic():
    rng = np.random.default_rng(0)
    rows = []
    true = {"t0": (0.5, -6.0, 1.0, 0.25), "t1": (0.3, -9.0, 0.9, 0.2)}
    for r in range(5):
        for task, (a, k, x0, b) in true.items():
            loss = np.linspace(1.4 - 0.05 * r, 0.6 - 0.05 * r, 20)
            acc = a / (1 + np.exp(-k * (loss - x0))) + b
            rows.append(pd.DataFrame({"run": f"r{r}", "task": task, "D": 1e9 * 1.3 ** np.arange(20),
                                      "acc": acc + 1e-4 * rng.standard_normal(20), "log_avg_loss": loss}))
    df = pd.concat(rows, ignore_index=True)
    train = Trajectories.from_frame(df[df.run != "r4"], x="D", y="acc", features=["log_avg_loss"])
    test = Trajectories.from_frame(df[df.run == "r4"], x="D", y="acc", features=["log_avg_loss"])
    norm = train.fit_normalizer()
    _, index = evaluation_batch(test, context_length=8, normalizer=norm)
    out = logistic_baseline(train, index)
    assert len(out) == len(index) and list(out.columns[:4]) == ["run", "task", "x", "prediction"]
    assert not out.fallback.any()
    np.testing.assert_allclose(out.prediction, index.y, atol=2e-3)  # r4 extrapolates to lower loss
    last = last_value_baseline(index)
    assert np.abs(last.prediction - index.y).mean() > 0.02
    ctx = context_law_baseline(test, index)
    assert len(ctx) == len(index) and np.isfinite(ctx.prediction).all()
    assert ((ctx.prediction >= 0) & (ctx.prediction <= 1)).all()
    assert set(ctx.choice) <= {"power_law", "saturating_power_law", "m3", "last_value"}


# --------------------------------------------------------------------------- training end to end
def test_backtest_and_harness_adapter_on_a_tiny_setting():
    from jaxscale.evaluate import LastPoints, backtest
    from jaxscale.neuneu.train import TrainConfig

    df = _table(n_runs=4, n_tasks=3)
    traj = Trajectories.from_frame(df, x="D", y="acc", features=["bpb"], run_columns=["size"])
    split = NeuNeuSplit("tiny", ("r0", "r1"), ("t0", "t1", "t2"), ("r2", "r3"), ("t0", "t1", "t2"), ("r0", "r1"))
    cfg = TrainConfig(steps=30, batch_size=16, log_every=10)
    res = neuneu_backtest(traj, split, train_config=cfg, context_length=8, baselines=("last_value", "logistic"),
                          model_overrides={"width": 16, "ff": 32, "depth": 1, "heads": 2}, loss_feature="bpb",
                          logistic_prior=True)
    assert res.forecaster.feature_names == ("bpb", "logistic_prior") and res.forecaster.trained.model_config.n_features == 6
    fc = res.forecasts
    assert set(fc.method) == {"neuneu", "last_value", "logistic"}
    assert {"run", "task", "x", "y", "method", "prediction", "q0.1", "q0.25", "q0.5", "q0.75", "q0.9"} <= set(fc)
    nn = fc[fc.method == "neuneu"]
    assert len(nn) == 6 * 9 and (np.diff(nn[["q0.1", "q0.25", "q0.5", "q0.75", "q0.9"]].to_numpy(), axis=1) >= 0).all()
    summary = res.summary.set_index("method")
    assert summary.loc["neuneu", "n_trajectories"] == 6 and 0 <= summary.loc["neuneu", "coverage_80"] <= 1
    assert np.isnan(summary.loc["last_value", "coverage_80"])
    # the summary MAE is the mean over (run, task) of the per-trajectory MAE
    per = (nn.prediction - nn.y).abs().groupby([nn.run, nn.task]).mean().mean()
    assert summary.loc["neuneu", "mae"] == pytest.approx(per)
    assert summarize(fc)[1].shape[0] == 3
    assert summary.loc["logistic", "mae_ratio_logistic"] == 1.0

    # the same model family inside jaxscale.evaluate.backtest (no loss features there)
    method = NeuNeuMethod(train_config=cfg, context_length=8,
                          model_overrides={"width": 16, "ff": 32, "depth": 1, "heads": 2})
    scores = backtest(df, [method], LastPoints(n=4), x="D", y="acc", by=["run", "task"])
    assert len(scores) == 12 and scores.mae.notna().all() and "coverage_80" in scores
    with pytest.raises(ValueError, match="without loss features"):
        NeuNeuMethod(forecaster=res.forecaster)(
            __import__("jaxscale").Dataset.from_frame(df, x="D", y="acc", by=["run", "task"]))


def test_cli_round_trip(tmp_path, capsys):
    from jaxscale.cli import main

    csv = tmp_path / "runs.csv"
    _table(n_runs=4, n_tasks=2).to_csv(csv, index=False)
    model = tmp_path / "model"
    common = ["--data", str(csv), "--features", "bpb", "--split", "runs", "--test-runs", "r3"]
    rc = main(["neuneu", "train", *common, "--steps", "20", "--batch-size", "16", "--context-length", "8",
               "--quiet", "--out", str(model)])
    assert rc == 0, capsys.readouterr().err
    assert (model / "neuneu_data.json").exists() and (model / "trained.json").exists()
    rc = main(["neuneu", "eval", str(model), *common, "--baselines", "last_value", "--out", str(tmp_path / "s.csv")])
    assert rc == 0, capsys.readouterr().err
    scores = pd.read_csv(tmp_path / "s.csv")
    assert set(scores.method) == {"neuneu", "last_value"} and set(scores.run) == {"r3"}
    rc = main(["neuneu", "predict", str(model), *common, "--out", str(tmp_path / "f.csv")])
    assert rc == 0
    forecast = pd.read_csv(tmp_path / "f.csv")
    assert len(forecast) == 2 * 9 and {"q0.1", "q0.9", "prediction"} <= set(forecast)
    capsys.readouterr()
    # held-out family: the runs whose family column is --test-family
    fam_csv = tmp_path / "family.csv"
    _table(n_runs=4, n_tasks=2).assign(family=lambda d: np.where(d.run == "r3", "new", "old")).to_csv(fam_csv, index=False)
    fam = ["--data", str(fam_csv), "--features", "bpb", "--split", "family", "--test-family", "new"]
    rc = main(["neuneu", "eval", str(model), *fam, "--baselines", "last_value", "--out", str(tmp_path / "sf.csv")])
    assert rc == 0, capsys.readouterr().err
    assert set(pd.read_csv(tmp_path / "sf.csv").run) == {"r3"}
    assert main(["neuneu", "eval", str(model), *fam[:-1], "nope"]) == 2
    assert "no run of family 'nope'" in capsys.readouterr().err
    # bad input: exit 2 with a message naming the problem
    assert main(["neuneu", "train", "--data", str(csv), "--y", "nope", "--out", str(tmp_path / "m2")]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert main(["neuneu", "eval", str(tmp_path / "missing"), *common]) == 2
    assert "no such model directory" in capsys.readouterr().err
    assert main(["neuneu", "eval", str(model), "--data", str(csv), "--split", "runs", "--test-runs", "r3"]) == 2
    assert "features" in capsys.readouterr().err  # trained with bpb, evaluated without
    assert main(["neuneu", "train", *common, "--steps", "0", "--out", str(tmp_path / "m3")]) == 2
    capsys.readouterr()
    # the logistic-prior variant: the prior of the test run is fitted on the other runs
    prior = ["--data", str(csv), "--features", "bpb,log_avg_loss", "--split", "runs", "--test-runs", "r3"]
    _table(n_runs=4, n_tasks=2).assign(log_avg_loss=lambda d: d.bpb / 2).to_csv(csv, index=False)
    rc = main(["neuneu", "train", *prior, "--logistic-prior", "--prior-losses", "bpb,log_avg_loss",
               "--prior-combine", "stack", "--steps", "10", "--batch-size", "16",
               "--context-length", "8", "--quiet", "--out", str(tmp_path / "mp")])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "mp" / "neuneu_data.json").read_text())
    assert meta["residual"] == "logistic_prior" and meta["info"]["prior_combine"] == "stack"
    assert meta["feature_names"][-3:] == ["logistic_prior_bpb", "logistic_prior_log_avg_loss", "logistic_prior"]
    assert main(["neuneu", "predict", str(tmp_path / "mp"), *prior, "--out", str(tmp_path / "fp.csv")]) == 0
    assert np.isfinite(pd.read_csv(tmp_path / "fp.csv")[["q0.1", "prediction", "q0.9"]].to_numpy()).all()


# --------------------------------------------------------------------------- notebook
def test_neuneu_notebook_runs(tmp_path, run_notebook):
    run_notebook("neuneu.ipynb", tmp_path)
    summary = pd.read_csv(tmp_path / "neuneu_summary.csv")
    assert set(summary.method) >= {"neuneu", "logistic", "last_value"}
    assert summary.mae.notna().all() and (summary.mae < 0.2).all()
    assert (tmp_path / "neuneu_forecast.png").stat().st_size > 10_000
