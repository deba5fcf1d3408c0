"""Tests of the `jaxscale` command line (`jaxscale.cli.main`) and the demo (`jaxscale.demo.run`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import cli, demo

TRUE = {"a": (2.0, 60.0, -0.3), "b": (1.2, 400.0, -0.4)}  # task -> (eps_inf, beta, c)
N = np.geomspace(1e6, 1e10, 9)


def ladder_frame(noise: float = 0.002, seed: int = 0) -> pd.DataFrame:
    """Two saturating power-law tasks, columns run, N, loss."""
    rng = np.random.default_rng(seed)
    rows = [pd.DataFrame({"run": run, "N": N, "loss": (e + b * N**c) * np.exp(rng.normal(0, noise, N.size))})
            for run, (e, b, c) in TRUE.items()]
    return pd.concat(rows, ignore_index=True)


def run_cli(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def ladder_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "ladder.csv"
    ladder_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(ladder_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fit artifact of `ladder_csv` written by ``jaxscale fit``."""
    out = tmp_path_factory.mktemp("fits") / "m2"
    code = cli.main(["fit", str(ladder_csv), "--law", "saturating_power_law", "--x", "N", "--y", "loss",
                     "--by", "run", "--out", str(out)])
    assert code == 0
    return out


# --------------------------------------------------------------------------- help, version, laws
@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["predict", "--help"], ["laws", "--help"],
                                  ["demo", "--help"], ["--version"]])
def test_help_and_version_exit_zero(capsys, argv):
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert "jaxscale" in out


def test_no_command_or_bad_option_is_usage_error(capsys):
    assert run_cli(capsys)[0] == 2
    code, _, err = run_cli(capsys, "fit", "data.csv", "--law", "m3", "--x", "N", "--y", "loss", "--out", "o",
                           "--polish", "0")
    assert code == 2 and "--polish" in err


def test_laws_lists_every_law(capsys):
    code, out, _ = run_cli(capsys, "laws")
    assert code == 0
    for name in jaxscale.laws.available():
        assert f"\n{name}\n" in f"\n{out}"
    assert "chinchilla" in out and "L = E + A / N^alpha + B / D^beta" in out and "inputs:  N, D" in out


# --------------------------------------------------------------------------- fit
def test_fit_writes_artifact_and_summary(fitted, capsys):
    assert {"meta.json", "arrays.npz", "fits.csv"} <= {p.name for p in fitted.iterdir()}
    table = pd.read_csv(fitted / "fits.csv").set_index("run")
    assert list(table["status"]) == ["converged", "converged"]
    for run, (e, _, c) in TRUE.items():
        assert table.loc[run, "eps_inf"] == pytest.approx(e, rel=0.05)
        assert table.loc[run, "c"] == pytest.approx(c, rel=0.05)
    res = jaxscale.load(fitted)
    assert res.law.name == "saturating_power_law" and res.data.by == ("run",)


def test_fit_summary_reports_invalid_tasks(ladder_csv, tmp_path, capsys):
    frame = pd.read_csv(ladder_csv)
    frame.loc[frame["run"] == "b", "loss"] *= -1.0  # log of a negative loss: task b cannot be fitted
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    code, out, _ = run_cli(capsys, "fit", path, "--law", "saturating_power_law", "--x", "N", "--y", "loss",
                           "--by", "run", "--on-invalid", "report", "--out", tmp_path / "fits")
    assert code == 0
    assert "2 task(s): 1 converged, 1 invalid_data" in out
    assert "run='b'" in out and "non-positive" in out


@pytest.mark.parametrize("change, expected", [
    (lambda f: f.drop(columns="loss"), "column(s) ['loss'] not in the data"),
    (lambda f: f.assign(loss=f["loss"].where(f.index != 3)), "column 'loss' has nan value at row 3"),
    (lambda f: f.assign(N=f["N"].astype(str).where(f.index != 2, "big")), "column 'N' must be numeric"),
])
def test_fit_bad_data_exits_2_naming_the_column(ladder_csv, tmp_path, capsys, change, expected):
    path = tmp_path / "bad.csv"
    change(pd.read_csv(ladder_csv)).to_csv(path, index=False)
    code, out, err = run_cli(capsys, "fit", path, "--law", "saturating_power_law", "--x", "N", "--y", "loss",
                             "--by", "run", "--out", tmp_path / "fits")
    assert code == 2
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert not (tmp_path / "fits").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--law", "nope", "--x", "N"], "unknown law 'nope'"),
    (["--law", "chinchilla", "--x", "N"], "takes 2 input(s)"),
    (["--law", "m3", "--x", "N", "--delta", "0.1"], "--delta only applies"),
])
def test_fit_bad_options_exit_2(ladder_csv, tmp_path, capsys, argv, expected):
    code, _, err = run_cli(capsys, "fit", ladder_csv, *argv, "--y", "loss", "--by", "run", "--out", tmp_path / "o")
    assert code == 2 and expected in err


def test_missing_files_exit_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "fit", tmp_path / "none.csv", "--law", "m3", "--x", "N", "--y", "loss",
                           "--out", tmp_path / "o")
    assert code == 2 and "none.csv" in err
    code, _, err = run_cli(capsys, "predict", tmp_path, "--at", "1e6")
    assert code == 2 and "not a saved fit" in err


def test_unexpected_error_exits_1(capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(jaxscale.laws, "get", boom)
    code, _, err = run_cli(capsys, "laws")
    assert code == 1 and "RuntimeError: boom" in err


# --------------------------------------------------------------------------- predict
def test_predict_inline(fitted, tmp_path, capsys):
    out_csv = tmp_path / "pred" / "forecast.csv"
    code, out, _ = run_cli(capsys, "predict", fitted, "--at", "1e11,1e12", "--out", out_csv)
    assert code == 0 and "4 prediction(s)" in out
    table = pd.read_csv(out_csv)
    assert list(table.columns) == ["run", "N", "prediction"]
    expected = jaxscale.load(fitted).forecast(np.array([1e11, 1e12]))
    np.testing.assert_allclose(table["prediction"], expected["prediction"])
    for run, (e, b, c) in TRUE.items():
        got = table.loc[table["run"] == run, "prediction"].to_numpy()
        np.testing.assert_allclose(got, e + b * np.array([1e11, 1e12]) ** c, rtol=0.02)
    code, out, _ = run_cli(capsys, "predict", fitted, "--at", "N=1e11")  # printed table
    assert code == 0 and "prediction" in out and len(out.strip().splitlines()) == 3


def test_predict_from_csv(fitted, tmp_path, capsys):
    per_row = tmp_path / "rows.csv"
    pd.DataFrame({"run": ["b", "a", "zzz"], "N": [1e11, 1e12, 1e11]}).to_csv(per_row, index=False)
    code, _, err = run_cli(capsys, "predict", fitted, "--at", per_row, "--out", tmp_path / "p1.csv")
    assert code == 0 and "1 row(s)" in err  # the unknown task is warned about
    table = pd.read_csv(tmp_path / "p1.csv")
    assert list(table["run"]) == ["b", "a", "zzz"] and table["prediction"].isna().tolist() == [False, False, True]

    shared = tmp_path / "shared.csv"
    pd.DataFrame({"N": [1e11, 1e12, 1e13]}).to_csv(shared, index=False)
    code, _, _ = run_cli(capsys, "predict", fitted, "--at", shared, "--out", tmp_path / "p2.csv")
    assert code == 0 and len(pd.read_csv(tmp_path / "p2.csv")) == 6  # every task at every row

    no_x = tmp_path / "no_x.csv"
    pd.DataFrame({"M": [1.0]}).to_csv(no_x, index=False)
    code, _, err = run_cli(capsys, "predict", fitted, "--at", no_x)
    assert code == 2 and "lacks x column(s) ['N']" in err


def test_parse_points():
    np.testing.assert_array_equal(cli.parse_points("N=7e10,1e11;D=1.4e12,2e12", ["N", "D"]),
                                  [[7e10, 1.4e12], [1e11, 2e12]])
    np.testing.assert_array_equal(cli.parse_points("D=2;N=1", ["N", "D"]), [[1.0, 2.0]])
    np.testing.assert_array_equal(cli.parse_points("1e6, 1e7", ["N"]), [[1e6], [1e7]])
    for spec, message in [("N=1,2;D=3", "same number of values"), ("N=1;Q=2", "'Q'"), ("N=1", "lacks x column"),
                          ("1,2", "takes 2 inputs"), ("N=1;D=x", "'D'")]:
        with pytest.raises(ValueError, match=message):
            cli.parse_points(spec, ["N", "D"])


# --------------------------------------------------------------------------- demo
def test_demo_run_recovers_truth(tmp_path):
    out = demo.run(tmp_path / "demo", seed=0)
    assert out["report"].exists() and out["figure"].exists()
    assert out["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = out["report"].read_text()
    assert "Held-out RMSLE" in report and "chinchilla_grid" in report

    metrics, status = out["metrics"], out["status"]
    assert set(metrics.columns) == {t.task for t in demo.TRUTHS}
    assert set(metrics.index) == set(demo.LAWS_1D) | set(demo.LAWS_2D)
    sat = [t.task for t in demo.TRUTHS if t.law == "saturating_power_law"]
    assert (metrics.loc["saturating_power_law", sat] < 0.02).all()
    assert metrics.loc["bnsl1", "bnsl_break"] < 0.02 and metrics.loc["chinchilla", "chinchilla_grid"] < 0.02
    assert (status.loc["saturating_power_law", sat] == "converged").all()

    # exponents and irreducible losses are identified; multiplicative coefficients much less so
    identified = {"saturating_power_law": ["eps_inf", "c"], "bnsl1": ["a", "c1", "d1"],
                  "chinchilla": ["E", "alpha", "beta"]}
    params = out["params"]
    rows = params[[p in identified[law] for law, p in zip(params["law"], params["param"])]]
    assert len(rows) == 4 * 2 + 3 + 3
    assert (rows["rel_error"] < 0.15).all(), rows


def test_demo_command(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "demo", "--out", tmp_path / "d", "--seed", "1")
    assert code == 0 and "held-out RMSLE" in out
    assert (tmp_path / "d" / "report.md").exists() and (tmp_path / "d" / "fits.png").exists()
