"""The Dataset: padding, bucketing, and one test per validation rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import Dataset, DataError
from jaxscale.data import bucket


def ladder(tasks=("a", "b"), n=6, c=-0.3):
    rows = []
    for i, t in enumerate(tasks):
        x = np.geomspace(1e6, 1e9, n)
        for xi in x:
            rows.append({"run": t, "N": xi, "loss": 2.0 + i * 0.1 + 40 * xi**c})
    return pd.DataFrame(rows)


def test_padding_and_buckets():
    df = ladder(tasks=("a", "b", "c"), n=9)
    ds = Dataset.from_frame(df, x="N", y="loss", by="run")
    assert ds.x.shape == (4, 12, 1) and ds.y.shape == (4, 12) and ds.mask.shape == (4, 12)
    assert ds.n_tasks == 3 and list(ds.n_points) == [9, 9, 9]
    assert not ds.mask[3].any() and ds.weight[:, 9:].sum() == 0
    # 9 and 12 points share one bucket, so one compiled function serves both
    assert Dataset.from_frame(ladder(n=12), x="N", y="loss", by="run").x.shape[1] == 12
    assert Dataset.from_frame(ladder(n=13), x="N", y="loss", by="run").x.shape[1] == 16
    assert [bucket(n) for n in (1, 8, 9, 13, 17, 20, 25, 33, 49, 100)] == [8, 8, 12, 16, 24, 24, 32, 48, 64, 128]
    back = ds.to_frame()
    assert len(back) == 27 and set(back.columns) == {"run", "N", "loss"}


def test_rows_are_sorted_within_task():
    df = ladder().sample(frac=1.0, random_state=0)
    ds = Dataset.from_frame(df, x="N", y="loss", by="run")
    for t in range(ds.n_tasks):
        xs = ds.x[t, ds.mask[t], 0]
        assert np.all(np.diff(xs) > 0)


def test_missing_column_named():
    with pytest.raises(DataError, match=r"\['tokens'\] not in the data"):
        Dataset.from_frame(ladder(), x="tokens", y="loss", by="run")


def test_non_numeric_column_named_with_row():
    df = ladder().astype({"N": object})
    df.loc[3, "N"] = "1.3B"
    with pytest.raises(DataError, match=r"column 'N' must be numeric: row 3 holds '1.3B'"):
        Dataset.from_frame(df, x="N", y="loss", by="run")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_named_with_task_and_row(bad):
    df = ladder()
    df.loc[7, "loss"] = bad
    with pytest.raises(DataError, match=r"column 'loss' has .* at row 7 \(task run='b'\)"):
        Dataset.from_frame(df, x="N", y="loss", by="run")


def test_negative_weight_rejected():
    df = ladder().assign(w=1.0)
    df.loc[0, "w"] = -1.0
    with pytest.raises(DataError, match="column 'w' has negative value"):
        Dataset.from_frame(df, x="N", y="loss", by="run", weight="w")


def test_duplicates_error_or_mean():
    df = ladder()
    dup = df.iloc[[2]].assign(loss=df.loss.iloc[2] + 0.2)
    both = pd.concat([df, dup], ignore_index=True)
    with pytest.raises(DataError, match=r"duplicate rows for task run='a' at N="):
        Dataset.from_frame(both, x="N", y="loss", by="run")
    ds = Dataset.from_frame(both, x="N", y="loss", by="run", duplicates="mean")
    assert list(ds.n_points) == [6, 6]
    assert ds.y[0, 2] == pytest.approx(df.loss.iloc[2] + 0.1)


def test_non_positive_x_for_log_law_and_y_for_log_loss():
    df = ladder()
    df.loc[0, "N"] = 0.0
    with pytest.raises(DataError, match=r"takes log of x but column 'N' has non-positive value 0.0"):
        jaxscale.fit(df, "saturating_power_law", x="N", y="loss", by="run")
    df = ladder()
    df.loc[8, "loss"] = -1.0
    with pytest.raises(DataError, match=r"task run='b': loss 'mse_log' takes log of 'loss'"):
        jaxscale.fit(df, "saturating_power_law", x="N", y="loss", by="run")


def test_too_few_points_for_parameters():
    df = ladder(n=3)
    with pytest.raises(DataError, match=r"3 point\(s\) for 6 free parameters of 'bnsl1'"):
        jaxscale.fit(df, "bnsl1", x="N", y="loss", by="run")


def test_wrong_input_count_for_law():
    with pytest.raises(DataError, match=r"takes 2 input\(s\) \('N', 'D'\)"):
        jaxscale.fit(ladder(), "chinchilla", x="N", y="loss", by="run")


def test_invalid_tasks_reported_while_the_rest_fit():
    """A batch with a NaN task, a too-short task and a non-positive task: the rest still fit."""
    df = ladder(tasks=("good1", "nan", "short", "neg", "good2"))
    df.loc[df.run.eq("nan").idxmax(), "loss"] = np.nan
    df = df.drop(df.index[df.run.eq("short")][2:])
    df.loc[df.run.eq("neg").idxmax(), "N"] = -5.0
    res = jaxscale.fit(df, "saturating_power_law", x="N", y="loss", by="run", on_invalid="report")
    table = res.to_frame().set_index("run")
    assert table.loc["good1", "status"] == "converged" and table.loc["good2", "status"] == "converged"
    assert table.loc["good1", "c"] == pytest.approx(-0.3, abs=1e-6)
    assert table.loc["nan", "status"] == "invalid_data" and "nan" in table.loc["nan", "reason"]
    assert table.loc["short", "status"] == "too_few_points" and "2 point(s)" in table.loc["short", "reason"]
    assert table.loc["neg", "status"] == "invalid_data" and "non-positive" in table.loc["neg", "reason"]
    assert table.loc[["nan", "short", "neg"], "c"].isna().all()  # reported, not silently fitted


def test_from_arrays_shape_error():
    with pytest.raises(DataError, match="expected x"):
        Dataset.from_arrays(np.ones((2, 5)), np.ones((2, 4)))
