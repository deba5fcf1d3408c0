"""Tests of jaxscale.datasets on the shared data snapshot; downloads use a local server only."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxscale.datasets as jd
from jaxscale.datasets import _registry, _store

DATA = Path(
    os.environ.get("JAXSCALE_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
CHINCHILLA = "chinchilla-besiroglu/data/svg_extracted_data.csv"
BNSL = "broken_neural_scaling_laws/four_digit_addition__dataset_size_vs_test_cross_entropy.csv"
OLMO_FIGURES = "olmo-ladder/src/scripts/paper/figures"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Private cache, no configured data dir, and a download base that cannot reach anything."""
    monkeypatch.setenv("JAXSCALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXSCALE_DATA", raising=False)
    monkeypatch.setattr(_store, "BASE_URL", "http://127.0.0.1:9")
    jd.set_data_dir(None)
    yield
    jd.set_data_dir(None)


def _copy(relpath: str, root: Path) -> Path:
    dest = root / relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / relpath, dest)
    return dest


# --------------------------------------------------------------------------- data directory


def test_data_dir_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert jd.get_data_dir() == tmp_path / "cache"
    monkeypatch.setenv("JAXSCALE_DATA", str(tmp_path / "env"))
    assert jd.get_data_dir() == tmp_path / "env"
    jd.set_data_dir(tmp_path / "set")
    assert jd.get_data_dir() == tmp_path / "set"
    assert jd.get_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("JAXSCALE_CACHE")
    assert jd.get_cache_dir() == Path("~/.cache/jaxscale/data").expanduser()


def test_registry_is_complete_and_urls_are_pinned() -> None:
    files = jd.registered_files()
    assert len(files) == 294
    assert all(len(digest) == 64 for digest in _registry.SHA256.values())
    github = "https://raw.githubusercontent.com"
    assert jd.url_for(CHINCHILLA, base_url=github) == (
        "https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/"
        "92258837425e1b5f2851d624287f0120583a3d0e/data/svg_extracted_data.csv"
    )
    assert jd.url_for("revisiting_neural_scaling_laws/data/benchmark.lang.csv").endswith(
        "DongWooLee-Eli/nslpfn/10a5a60911a2a22ef453d8b4ddf1408b6a6075d9/data/benchmark.lang.csv"
    )
    for derived in _registry.DERIVED:
        assert jd.url_for(derived) is None
    with pytest.raises(KeyError, match="not a registered"):
        jd.url_for("nope.csv")


@needs_data
def test_registry_matches_shared_data() -> None:
    on_disk = {
        p.relative_to(DATA).as_posix()
        for p in DATA.rglob("*")
        if p.is_file() and p.name not in ("README.md", "PROVENANCE.md")
    }
    assert on_disk == set(jd.registered_files())


@needs_data
def test_fetch_finds_verifies_and_memoises() -> None:
    jd.set_data_dir(DATA)
    path = jd.fetch(CHINCHILLA)
    assert path == DATA / CHINCHILLA
    stat = path.stat()
    assert (str(path.resolve()), stat.st_mtime_ns, stat.st_size) in _store._verified
    with pytest.raises(KeyError, match="not a registered"):
        jd.fetch("chinchilla-besiroglu/other.csv")


@needs_data
def test_checksum_mismatch_names_file_and_hashes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    copy = _copy(BNSL, root)
    assert jd.fetch(BNSL, data_dir=root) == copy  # intact copy passes (and is memoised)
    copy.write_bytes(copy.read_bytes().replace(b"2.13809046", b"2.13809047"))
    os.utime(copy, ns=(1, 1))  # same size: the memo key must still change through mtime
    actual = hashlib.sha256(copy.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as err:
        jd.fetch(BNSL, data_dir=root)
    message = str(err.value)
    assert BNSL in message and _registry.SHA256[BNSL] in message and actual in message


def test_missing_derived_file_points_to_jaxscale_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="JAXSCALE_DATA") as err:
        jd.fetch("gadre-overtraining/derived_flat_104models.csv", data_dir=tmp_path / "empty")
    assert "derived_flat_104models.csv" in str(err.value)


# --------------------------------------------------------------------------- downloads


@dataclass
class Server:
    """A local HTTP server laid out like raw.githubusercontent.com."""

    root: Path
    url: str
    requests: list[str] = field(default_factory=list)

    def publish(self, relpath: str, data: bytes) -> None:
        url_path = urllib.parse.urlparse(jd.url_for(relpath, base_url=self.url)).path
        dest = self.root / urllib.parse.unquote(url_path).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_port}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@needs_data
def test_download_into_cache_with_progress(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (DATA / CHINCHILLA).read_bytes()
    server.publish(CHINCHILLA, data)
    empty = tmp_path / "empty"
    path = jd.fetch(CHINCHILLA, data_dir=empty, base_url=server.url)
    assert path == tmp_path / "cache" / CHINCHILLA
    assert path.read_bytes() == data
    progress = capsys.readouterr().err
    assert "svg_extracted_data.csv" in progress and "100%" in progress
    assert len(server.requests) == 1
    # Second call: served from the cache, no new request.
    assert jd.fetch(CHINCHILLA, data_dir=empty, base_url=server.url) == path
    assert len(server.requests) == 1
    assert len(jd.load_chinchilla(data_dir=empty)) == 240


@needs_data
def test_download_checksum_mismatch_leaves_nothing(server: Server, tmp_path: Path) -> None:
    server.publish(CHINCHILLA, (DATA / CHINCHILLA).read_bytes() + b"\n")
    with pytest.raises(ValueError, match="Checksum mismatch for chinchilla"):
        jd.fetch(CHINCHILLA, data_dir=tmp_path / "empty", base_url=server.url, progress=False)
    cache = tmp_path / "cache"
    assert not any(p.is_file() for p in cache.rglob("*"))


@needs_data
def test_download_uses_module_base_url(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relpath = "gadre-overtraining/scaling/open_lm_configs/d=96_l=8_h=4.json"  # '=' in the URL
    server.publish(relpath, (DATA / relpath).read_bytes())
    monkeypatch.setattr(_store, "BASE_URL", server.url)
    path = jd.fetch(relpath, data_dir=tmp_path / "empty", progress=False)
    assert json.loads(path.read_text())["hidden_dim"] == 96


def test_download_http_error_is_reported(server: Server, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="Downloading .* failed"):
        jd.fetch(CHINCHILLA, data_dir=tmp_path / "empty", base_url=server.url, progress=False)


# --------------------------------------------------------------------------- loaders


@pytest.fixture(scope="module")
def olmo() -> dict[str, pd.DataFrame]:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return {kind: jd.load_olmo_ladder(kind, data_dir=DATA) for kind in ("checkpoints", "final")}


@needs_data
def test_load_revisiting() -> None:
    df = jd.load_revisiting(data_dir=DATA)
    assert list(df.columns) == ["domain", "task", "source_task", "model", "x", "y", "split"]
    assert len(df) == 20282 - 687 == 19595
    assert not df.duplicated().any()
    assert df.task.nunique() == 92
    assert df.groupby("domain").task.nunique().to_dict() == {"IC": 72, "NMT": 5, "LM": 5, "BB": 10}
    assert df.split.value_counts().to_dict() == {"extrapolate": 15323, "train": 4272}
    assert df.groupby("task").x.is_monotonic_increasing.all()
    # Every extrapolation x lies beyond every train x of its curve.
    bounds = df.groupby(["task", "split"]).x.agg(["min", "max"]).unstack("split")
    assert (bounds[("min", "extrapolate")] > bounds[("max", "train")]).all()
    first = df[df.task == "NMT/log_perplexity/6 Enc, 6 Dec"].iloc[0]
    assert (first.x, first.y, first.split) == (500000.0, pytest.approx(0.9311752923), "train")
    np.testing.assert_allclose(df[df.domain == "LM"].groupby("task").y.first(), 0.999)
    assert df.y.between(0, 1).all()


@needs_data
def test_load_chinchilla() -> None:
    df = jd.load_chinchilla(data_dir=DATA)
    full = jd.load_chinchilla(drop_highest=0, data_dir=DATA)
    assert list(df.columns) == ["N", "C", "D", "loss"]
    assert (len(df), len(full)) == (240, 245)
    np.testing.assert_allclose(df.D, df.C / (6 * df.N))
    assert full.loss.max() == pytest.approx(5.005581996196243)
    assert df.loss.max() == pytest.approx(3.405928, abs=1e-6)
    assert full.D.min() == pytest.approx(2.45e8, rel=0.01)


@needs_data
def test_load_bnsl_addition() -> None:
    df = jd.load_bnsl_addition(data_dir=DATA)
    assert len(df) == 17 and df.split.value_counts().to_dict() == {"fit": 14, "heldout": 3}
    assert df[df.split == "heldout"].x.tolist() == [800.0, 864.0, 928.0]
    assert df.y.iloc[0] == pytest.approx(2.13809046)


@needs_data
def test_load_gadre_and_table1_points() -> None:
    df = jd.load_gadre(data_dir=DATA)
    assert len(df) == 104 and df.name.is_unique
    assert df.dataset.value_counts().to_dict() == {"rpj": 35, "rw_original": 35, "c4_original": 34}
    for column in ["dataset", "model", "size", "N", "D", "M", "C", "loss_c4_val", "err_avg17",
                   "err_avg46", "acc_hellaswag"]:
        assert column in df
    np.testing.assert_allclose(df.C, 6.0 * df.N * df.D)
    assert (df.D == df.M * df.N).all()
    assert sum(c.startswith("acc_") for c in df.columns) == 46
    assert df.groupby("dataset").fit_loss.sum().eq(5).all()
    assert df.groupby("dataset").fit_error.sum().eq(6).all()
    targets = df[df.target].set_index("dataset")
    assert len(targets) == 6 and set(targets["size"]) == {"1.4B", "6.9B"}
    # The 1.4B target is the largest M each dataset has for that size.
    largest = df[df["size"] == "1.4B"].groupby("dataset").M.max()
    assert targets[targets["size"] == "1.4B"].M.to_dict() == largest.to_dict()
    row = df.set_index("name").loc["rpj-d=96_l=8_h=4-16.0"]
    assert (row["size"], row.M, row.fit_loss) == ("0.011B", 320.0, True)
    assert row.N == 10_569_312


@needs_data
def test_gadre_task_table_matches_averages() -> None:
    tasks = jd.gadre_task_table(data_dir=DATA)
    models = jd.load_gadre(data_dir=DATA).set_index("name")
    assert len(tasks) == 104 * 46 and tasks.task.nunique() == 46
    assert tasks[tasks.in_subset17].task.nunique() == 17
    subset = tasks[tasks.in_subset17].groupby("name").error.mean()
    np.testing.assert_allclose(subset, models.err_avg17.loc[subset.index], atol=1e-12)
    np.testing.assert_allclose(
        tasks.groupby("name").error.mean(), models.err_avg46.sort_index(), atol=1e-12
    )
    baselines = tasks.drop_duplicates("task").set_index("task").random_baseline
    assert (baselines["piqa"], baselines["squad"], baselines["mmlu"]) == (0.5, 0.0, 0.25)


def test_olmo_runs_and_roles(olmo: dict[str, pd.DataFrame]) -> None:
    ckpt = olmo["checkpoints"]
    runs = ckpt.drop_duplicates("run").set_index("run")
    assert len(runs) == 34
    assert runs.role.value_counts().to_dict() == {"train": 16, "other": 16, "target": 2}
    assert set(runs.index[runs.role == "target"]) == {"peteish7-anneal", "peteish13"}
    train = runs[runs.role == "train"]
    assert set(train["size"]) == {"190M", "370M", "760M", "1.3B"}
    assert sorted(set(train.xC)) == [1.0, 2.0, 5.0, 10.0] and not train.rerun.any()
    config = json.loads((DATA / jd.olmo.OLMO_FINAL_CONFIG).read_text())
    for entry in config.values():
        rows = runs[(runs["size"] == entry["label"].split("-")[0])]
        assert (rows.N == entry["n"]).all() and (rows.flops_per_token == entry["flops"]).all()
    assert runs.loc["peteish7-anneal", "D_final"] == 3_945_065_873_408
    assert runs.loc["peteish13", "D_final"] == 5_000_088_518_656
    assert ckpt.task.nunique() == 22
    assert ckpt.groupby("run").size().loc["190M-1xC"] == 37 * 22
    np.testing.assert_allclose(ckpt.C, ckpt.D * ckpt.flops_per_token)
    assert ckpt.loc[ckpt.run.str.startswith("peteish"), "acc_mc"].notna().all()
    assert ckpt.loc[~ckpt.run.str.startswith("peteish"), "acc_mc"].isna().all()


def test_olmo_final_points_reproduce_paper_targets(olmo: dict[str, pd.DataFrame]) -> None:
    final = olmo["final"]
    assert len(final) == 34 * 22
    target = final[final.run == "peteish13"].set_index("task")
    assert (target.n_avg == 5).all() and (target.D == 5_000_088_518_656).all()
    step1 = pd.read_csv(DATA / OLMO_FIGURES / "step1_main.csv").set_index("Task")
    chained = pd.read_csv(DATA / OLMO_FIGURES / "chained_main.csv").set_index("Task")
    np.testing.assert_allclose(target.bpb.loc[step1.index], step1.Actual, rtol=1e-9)
    np.testing.assert_allclose(target.acc.loc[chained.index], chained.Actual, rtol=1e-9)
    train = final[final.role == "train"]
    assert train.groupby("task").size().eq(16).all() and (train.n_avg == 5).all()


@needs_data
def test_olmo_lm_losses_and_target_file_is_tail_of_full_run() -> None:
    lm = jd.load_olmo_ladder("lm", data_dir=DATA)
    assert lm.dataset.nunique() == 11 and "c4_en" in set(lm.dataset)
    final_file = pd.read_csv(
        DATA / "olmo-ladder/src/scripts/paper/data/ladder-runs/peteish13_eval_final.csv"
    )
    c4 = lm[(lm.run == "peteish13") & (lm.dataset == "c4_en")].set_index("step").loss
    np.testing.assert_array_equal(
        c4.loc[final_file._step].to_numpy(), final_file["eval/c4_en-validation/CrossEntropyLoss"]
    )
    with pytest.raises(ValueError, match="kind must be"):
        jd.load_olmo_ladder("wide", data_dir=DATA)


@needs_data
def test_load_proteus() -> None:
    df = jd.load_proteus(data_dir=DATA)
    assert len(df) == 2450 * 6 and df.model.nunique() == 2450
    assert set(df.task) == set(jd.PROTEUS_TASKS)
    assert pd.api.types.is_datetime64_any_dtype(df.date)
    assert df.date.min().year == 2022 and df.date.max().year == 2026
    assert df.log10_flops.min() == pytest.approx(21.09, abs=0.01)
    assert df.log10_flops.max() == pytest.approx(24.82, abs=0.01)
    assert df.score.between(0, 1).all() and df.flops.notna().all()
    row = df[(df.model == "meta-llama/Meta-Llama-3-8B") & (df.task == "BBH")].iloc[0]
    assert (row.params, row.score) == (8e9, pytest.approx(0.457559))


@needs_data
def test_load_colpret() -> None:
    df = jd.load_colpret(data_dir=DATA)
    assert list(df.columns) == ["curve", "tokens", "loss"]
    assert len(df) == 35876 and df.curve.nunique() == 192
    assert len(jd.load_colpret(drop_duplicates=True, data_dir=DATA)) == 35188
    assert df.groupby("curve", sort=False).tokens.is_monotonic_increasing.all()
    assert df.tokens.min() == pytest.approx(1.025e8, rel=0.01)


@needs_data
def test_load_neuneu_histograms() -> None:
    invp = jd.load_neuneu_histograms(data_dir=DATA)
    loss = jd.load_neuneu_histograms("loss", data_dir=DATA)
    assert (len(invp), len(loss)) == (38 * 64, 38 * 32)
    np.testing.assert_allclose(invp.groupby("step").mass.sum(), 1.0, atol=1e-5)
    assert invp.step.max() == 45787 and loss.hi.max() == 15.0


@needs_data
def test_missing_column_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / BNSL
    bad.parent.mkdir(parents=True)
    bad.write_text("train_dataset_size,test_cross_entropy\n160,2.1\n")
    monkeypatch.setitem(_registry.SHA256, BNSL, hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(ValueError, match=r"missing column\(s\) \['split'\]"):
        jd.load_bnsl_addition(data_dir=tmp_path)


# --------------------------------------------------------------------------- lm-eval reader

OLD_FORMAT = {
    "results": {
        "hellaswag": {"acc": 0.30, "acc_stderr": 0.004, "acc_norm": 0.33, "acc_norm_stderr": 0.005},
        "lambada_openai": {"ppl": 30.5, "ppl_stderr": 1.2, "acc": 0.41, "acc_stderr": 0.007},
    },
    "versions": {"hellaswag": 0, "lambada_openai": 0},
    "config": {
        "model": "hf-causal",
        "model_args": "pretrained=EleutherAI/pythia-160m,revision=step1000",
        "num_fewshot": 0,
    },
}

NEW_FORMAT = {
    "results": {
        "arc_easy": {
            "alias": "arc_easy", "acc,none": 0.62, "acc_stderr,none": 0.01,
            "acc_norm,none": 0.58, "acc_norm_stderr,none": "N/A",
        },
        "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.12,
                  "exact_match_stderr,strict-match": 0.009},
    },
    "n-shot": {"arc_easy": 0, "gsm8k": 5},
    "config": {
        "model": "hf",
        "model_args": {"pretrained": "allenai/OLMo-1B", "revision": "step20000-tokens84B"},
        "model_num_parameters": 1176764416,
    },
    "model_name": "allenai/OLMo-1B",
}


def _write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_read_lm_eval_old_format(tmp_path: Path) -> None:
    df = jd.read_lm_eval(_write(tmp_path / "old.json", OLD_FORMAT))
    assert len(df) == 4
    row = df[(df.task == "hellaswag") & (df.metric == "acc_norm")].iloc[0]
    assert (row.model, row.value, row.stderr, row.n_shot) == ("EleutherAI/pythia-160m", 0.33, 0.005, 0)
    assert (row.revision, row.step) == ("step1000", 1000.0)
    assert row["filter"] is None and np.isnan(row.tokens) and np.isnan(row.params)
    assert set(df.metric) == {"acc", "acc_norm", "ppl"}


def test_read_lm_eval_new_format_and_directories(tmp_path: Path) -> None:
    _write(tmp_path / "runs" / "a" / "results_1.json", NEW_FORMAT)
    _write(tmp_path / "runs" / "b" / "results_2.json", OLD_FORMAT)
    df = jd.read_lm_eval([tmp_path / "runs"])
    assert list(df.columns) == jd.lm_eval.COLUMNS
    new = df[df.model == "allenai/OLMo-1B"].set_index(["task", "metric"])
    assert len(new) == 3
    acc = new.loc[("arc_easy", "acc")]
    assert (acc.value, acc.stderr, acc["filter"], acc.n_shot) == (0.62, 0.01, "none", 0.0)
    assert np.isnan(new.loc[("arc_easy", "acc_norm"), "stderr"])
    gsm = new.loc[("gsm8k", "exact_match")]
    assert (gsm["filter"], gsm.n_shot) == ("strict-match", 5.0)
    assert (acc.step, acc.tokens, acc.params) == (20000.0, 84e9, 1176764416.0)
    assert len(df) == 7


def test_read_lm_eval_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        jd.read_lm_eval(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="no 'results' object"):
        jd.read_lm_eval(_write(tmp_path / "other.json", {"config": {}}))
