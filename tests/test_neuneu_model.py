"""NeuNeu model and trainer: shapes, ordering, masking, weights, determinism, resume, sharding, learning.

Models here are tiny (width 16) except in the learning test (the ``small`` config), so the file runs
in well under two minutes on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxscale.neuneu import (
    CONFIGS, ModelConfig, NeuNeu, TrainConfig, Trained, count_params, model_config, pinball_loss, synthetic_eval_batch,
    synthetic_sampler, train,
)
from jaxscale.neuneu.batch import Batch

TINY = dict(width=16, depth=2, heads=2, ff=32)


def tiny(n_features: int = 8, **kw) -> ModelConfig:
    return model_config("small", n_features=n_features, **{**TINY, **kw})


@nnx.jit
def apply(model: NeuNeu, batch: Batch) -> jax.Array:
    return model(batch)


def params(model: NeuNeu) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def random_batch(rng: np.random.Generator, b: int, length: int, f: int) -> Batch:
    n = rng.integers(0, length + 1, b)  # 0 .. length points; some rows without context
    mask = np.arange(length) < n[:, None]
    return Batch(
        ctx_y=np.where(mask, rng.uniform(0, 1, (b, length)), 0).astype(np.float32),
        ctx_gap=np.where(mask, rng.uniform(0, 3, (b, length)), 0).astype(np.float32),
        ctx_mask=mask,
        features=rng.normal(size=(b, f)).astype(np.float32),
        target=rng.uniform(0, 1, b).astype(np.float32),
        weight=np.ones(b, np.float32),
        ctx_features=np.zeros((b, length, 0), np.float32),
    )


@pytest.fixture(scope="module")
def sampler():
    return synthetic_sampler(16, 4, batch_size=8, context_length=12, n_features=8, seed=0)


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("soft_prompt,f", [("mlp", 8), ("none", 0), ("cnn", 300)])
def test_shapes_and_order_at_init(soft_prompt, f):
    cnn = dict(cnn_channels=(4, 8), cnn_kernel=8, cnn_stride=4)
    cfg = model_config("small", n_features=f, soft_prompt=soft_prompt, **cnn, **TINY)
    model = NeuNeu(cfg, rngs=nnx.Rngs(1))
    out = apply(model, random_batch(np.random.default_rng(0), 16, 10, f))
    assert out.shape == (16, len(cfg.quantiles)) and out.dtype == jnp.float32
    assert np.isfinite(out).all()
    assert (np.diff(np.asarray(out), axis=1) > 0).all()
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.float32)}


def test_extreme_inputs_finite_and_ordered():
    cfg = tiny()
    model = NeuNeu(cfg, rngs=nnx.Rngs(0))
    b = random_batch(np.random.default_rng(1), 16, 10, 8)
    bad = np.array([1e30, -1e30, np.inf, -np.inf, np.nan, 3e38, 0.0, 1.0] * 2, np.float32)[:, None]
    extreme = b._replace(
        ctx_y=bad * np.ones((1, 10), np.float32),
        ctx_gap=bad[::-1] * np.ones((1, 10), np.float32),
        ctx_mask=np.ones((16, 10), bool),
        features=bad * np.ones((1, 8), np.float32),
    )
    out = np.asarray(apply(model, extreme))
    assert np.isfinite(out).all()
    assert (np.diff(out, axis=1) >= 0).all()
    # The quantiles are offsets from the last observed accuracy, clipped to [0, 1].
    np.testing.assert_allclose(out[0, cfg.median_index], 1.0, atol=0.5)


def test_masked_positions_do_not_change_output():
    model = NeuNeu(tiny(), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(2)
    b = random_batch(rng, 16, 10, 8)
    assert (~b.ctx_mask.any(1)).any()  # some rows have no context at all
    junk = rng.normal(0, 1e6, b.ctx_y.shape).astype(np.float32)
    junk[:, ::3] = np.nan
    noisy = b._replace(ctx_y=np.where(b.ctx_mask, b.ctx_y, junk), ctx_gap=np.where(b.ctx_mask, b.ctx_gap, -junk))
    ref, out = np.asarray(apply(model, b)), np.asarray(apply(model, noisy))
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    # A present point does change it (the test can fail).
    moved = b._replace(ctx_y=np.where(b.ctx_mask, 1 - b.ctx_y, b.ctx_y))
    rows = b.ctx_mask.any(1)
    assert np.abs(np.asarray(apply(model, moved)) - ref)[rows].min() > 1e-4


def test_weight_zero_rows_do_not_change_loss_or_gradients():
    cfg = tiny()
    model = NeuNeu(cfg, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(3)
    b = random_batch(rng, 8, 6, 8)
    pad = random_batch(rng, 5, 6, 8)
    pad = pad._replace(weight=np.zeros(5, np.float32), target=np.full(5, np.nan, np.float32),
                       ctx_y=pad.ctx_y * 1e3)
    both = Batch(*(np.concatenate([u, v]) for u, v in zip(b, pad)))

    @nnx.jit
    def loss_and_grad(m, batch):
        return nnx.value_and_grad(lambda m: pinball_loss(m(batch), batch.target, batch.weight, cfg.quantiles))(m)

    l1, g1 = loss_and_grad(model, b)
    l2, g2 = loss_and_grad(model, both)
    assert np.isfinite(l2)
    np.testing.assert_allclose(l2, l1, rtol=1e-6)
    for u, v in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-8)
    # Weights do matter when non-zero.
    reweighted = b._replace(weight=np.arange(1, 9, dtype=np.float32))
    assert abs(float(loss_and_grad(model, reweighted)[0]) - float(l1)) > 1e-6


def test_pinball_loss_values():
    q = (0.1, 0.5, 0.9)
    pred = jnp.array([[0.0, 0.0, 0.0]])
    # target above all predictions by 1: mean(0.1, 0.5, 0.9) = 0.5; below by 1: mean(0.9, 0.5, 0.1) = 0.5
    assert float(pinball_loss(pred, jnp.array([1.0]), jnp.array([1.0]), q)) == pytest.approx(0.5)
    assert float(pinball_loss(pred + 1, jnp.array([0.0]), jnp.array([2.0]), q)) == pytest.approx(0.5)


def test_paper_config_has_about_19m_parameters():
    cfg = CONFIGS["paper"]
    assert (cfg.width, cfg.depth, cfg.heads, cfg.ff, cfg.soft_prompt) == (512, 6, 8, 2048, "cnn")
    n = count_params(cfg)  # abstract: nothing allocated
    assert 17e6 < n < 21e6, n
    small = model_config("small", n_features=16)
    assert count_params(small) == count_params(NeuNeu(small, rngs=nnx.Rngs(0)))


def test_config_validation_and_overrides():
    assert model_config("small", n_features=0).soft_prompt == "none"
    assert model_config("paper", n_features=64).soft_prompt == "mlp"  # a histogram, not a raw vector
    assert model_config("paper", n_features=100_000).soft_prompt == "cnn"
    with pytest.raises(ValueError):
        model_config("small", width=30, heads=4)
    with pytest.raises(ValueError):
        model_config("small", n_features=0, soft_prompt="mlp")
    with pytest.raises(ValueError):
        model_config("small", quantiles=(0.5, 0.1))
    cfg = tiny(quantiles=[0.05, 0.5, 0.95])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_bf16_compute_keeps_float32_params(sampler):
    model = NeuNeu(tiny(dtype="bfloat16"), rngs=nnx.Rngs(0))
    out = np.asarray(apply(model, random_batch(np.random.default_rng(4), 16, 10, 8)))
    assert out.dtype == np.float32 and np.isfinite(out).all() and (np.diff(out, axis=1) >= 0).all()
    assert {x.dtype for x in params(model)} == {np.dtype(np.float32)}
    # Training with bf16 (auto on GPU/TPU; forced here on CPU): float32 params, finite loss.
    cfg = tiny(depth=1)
    trained = train(sampler, cfg, TrainConfig(steps=2, batch_size=8, bf16=True, log_every=1), progress=False)
    assert trained.model_config.dtype == "bfloat16" and np.isfinite(trained.history["loss"]).all()
    assert {x.dtype for x in params(trained.model)} == {np.dtype(np.float32)}


# ---------------------------------------------------------------- synthetic data


def test_synthetic_sampler_is_a_pure_function_of_step(sampler):
    a, b, c = sampler(5), sampler(5), sampler(6)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.ctx_y, c.ctx_y)
    assert a.ctx_y.shape == (8, 12) and a.features.shape == (8, 8) and sampler.context_length == 12
    m = a.ctx_mask
    assert m[:, 0].all() and (m[:, :-1] >= m[:, 1:]).all()  # left-aligned, at least one point
    assert (a.ctx_gap[m] > 0).all() and ((a.target >= 0) & (a.target <= 1)).all()


# ---------------------------------------------------------------- training


# One model config and one optimizer setting for the training tests: they share a compiled step.
TRAIN_CFG = dict(n_features=8, dropout=0.1)
TC = TrainConfig(steps=6, batch_size=8, seed=3, log_every=1, checkpoint_every=2)


def test_training_is_deterministic_given_the_seed(sampler):
    cfg = tiny(**TRAIN_CFG)
    a = train(sampler, cfg, TC, progress=False, stop_after=3)
    b = train(sampler, cfg, TC, progress=False, stop_after=3)
    c = train(sampler, cfg, dataclasses.replace(TC, seed=4), progress=False, stop_after=3)
    for u, v in zip(params(a.model), params(b.model)):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(params(a.model), params(c.model)))
    assert a.step == 3 and list(a.history["step"]) == [1, 2, 3]
    assert a.history["loss"].equals(b.history["loss"])


def test_resume_reproduces_uninterrupted_run(sampler, tmp_path):
    cfg = tiny(**TRAIN_CFG)
    full = train(sampler, cfg, TC, checkpoint_dir=tmp_path / "full", progress=False)

    seen = []

    def recording(step):
        seen.append(step)
        return sampler(step)

    recording.n_features = sampler.n_features
    part = train(recording, cfg, TC, checkpoint_dir=tmp_path / "part", progress=False, stop_after=3)
    assert part.step == 3 and seen == [0, 1, 2]
    seen.clear()
    resumed = train(recording, cfg, TC, checkpoint_dir=tmp_path / "part", progress=False)
    assert seen == [3, 4, 5]  # restarted at step 3, not from scratch
    assert resumed.step == full.step == 6
    for u, v in zip(params(full.model), params(resumed.model)):
        np.testing.assert_array_equal(u, v)
    cols = ["step", "loss", "learning_rate", "grad_norm"]
    assert len(full.history) == 6
    assert full.history[cols].equals(resumed.history[cols]), (full.history, resumed.history)
    # Calling again on a finished run trains nothing and returns the same model.
    seen.clear()
    again = train(recording, cfg, TC, checkpoint_dir=tmp_path / "part", progress=False)
    assert seen == [] and again.step == 6
    for u, v in zip(params(full.model), params(again.model)):
        np.testing.assert_array_equal(u, v)


def test_save_load_round_trip(sampler, tmp_path):
    calls = []
    test = sampler(999)

    def eval_fn(t: Trained) -> dict[str, float]:
        calls.append(t.step)
        return {"mae": float(np.abs(t.predict(test)[:, 2] - test.target).mean())}

    tc = dataclasses.replace(TC, log_every=2, eval_every=3)
    trained = train(sampler, tiny(**TRAIN_CFG), tc, progress=False, eval_fn=eval_fn)
    assert calls == [3, 6] and list(trained.history["step"]) == [2, 3, 4, 6]
    assert trained.history["mae"].notna().tolist() == [False, True, False, True]
    trained.save(tmp_path / "model")
    loaded = Trained.load(tmp_path / "model")
    assert loaded.model_config == trained.model_config and loaded.train_config == tc and loaded.step == 6
    assert loaded.history.equals(trained.history)
    p1, p2 = trained.predict(test, batch_size=3), loaded.predict(test)
    assert p1.shape == (8, 5) and p1.dtype == np.float64 and (np.diff(p1, axis=1) >= 0).all()
    np.testing.assert_allclose(p1, p2, rtol=1e-6)


def test_ensemble_averages_members_and_round_trips(sampler, tmp_path):
    from jaxscale.neuneu.train import TrainedEnsemble, load_trained

    members = [train(sampler, tiny(**TRAIN_CFG), dataclasses.replace(TC, seed=s), progress=False) for s in (0, 1)]
    ens = TrainedEnsemble(members)
    test = sampler(999)
    q = ens.predict(test)
    np.testing.assert_allclose(q, (members[0].predict(test) + members[1].predict(test)) / 2, rtol=1e-6)
    assert (np.diff(q, axis=1) >= 0).all() and ens.model_config == members[0].model_config
    ens.save(tmp_path / "ens")
    again = load_trained(tmp_path / "ens")
    assert isinstance(again, TrainedEnsemble) and len(again.members) == 2
    np.testing.assert_allclose(again.predict(test), q, rtol=1e-6)


def test_constant_base_and_context_features_change_the_readout():
    rng = np.random.default_rng(0)
    b = random_batch(rng, 6, 8, 0)
    b = b._replace(ctx_features=rng.normal(size=(6, 8, 2)).astype(np.float32))
    cfg = model_config("small", n_features=0, width=16, ff=32, heads=2, base="constant", base_value=0.5,
                       n_ctx_features=2)
    model = NeuNeu(cfg, rngs=nnx.Rngs(0))
    q = np.asarray(model(b))
    assert q.shape == (6, 5) and (np.diff(q, axis=1) >= 0).all()
    np.testing.assert_allclose(q[:, 2], 0.5, atol=0.05)  # starts at the constant base, not the last value
    moved = np.asarray(model(b._replace(ctx_features=b.ctx_features + 1.0)))
    rows = b.ctx_mask.any(axis=1)
    assert not np.allclose(moved[rows], q[rows])
    with pytest.raises(ValueError, match="base must be"):
        model_config("small", base="mean")


def test_recent_base_starts_at_the_mean_of_the_last_observed_values():
    rng = np.random.default_rng(1)
    b = random_batch(rng, 8, 10, 0)
    cfg = model_config("small", n_features=0, width=16, ff=32, heads=2, base="recent", base_window=3)
    q = np.asarray(NeuNeu(cfg, rngs=nnx.Rngs(0))(b))
    n = b.ctx_mask.sum(axis=1)
    want = np.array([b.ctx_y[i, max(0, k - 3):k].mean() if k else 0.5 for i, k in enumerate(n)])
    np.testing.assert_allclose(q[:, 2], want, atol=0.03)  # the head starts near zero
    last = np.array([b.ctx_y[i, k - 1] if k else 0.5 for i, k in enumerate(n)])
    assert np.abs(want - last).max() > 0.1  # the test can tell the two bases apart
    with pytest.raises(ValueError, match="base_window"):
        model_config("small", base="recent", base_window=0)


def test_mismatched_features_raise(sampler):
    with pytest.raises(ValueError, match="features"):
        train(sampler, tiny(n_features=4), TrainConfig(steps=1, batch_size=8), progress=False)


SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    from flax import nnx
    from jaxscale.neuneu import TrainConfig, model_config, synthetic_sampler, train
    assert len(jax.devices()) == 4, jax.devices()
    s = synthetic_sampler(16, 4, batch_size=8, context_length=12, n_features=8, seed=0)
    cfg = model_config("small", n_features=8, width=16, depth=1, heads=2, ff=32)
    tc = TrainConfig(steps=3, batch_size=8, log_every=1)
    many = train(s, cfg, tc, progress=False)
    one = train(s, cfg, tc, progress=False, devices=jax.devices()[:1])
    np.testing.assert_allclose(many.history["loss"], one.history["loss"], rtol=1e-5)
    for u, v in zip(jax.tree.leaves(nnx.state(many.model)), jax.tree.leaves(nnx.state(one.model))):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-6)
    b = s(100)
    np.testing.assert_allclose(many.predict(b), one.predict(b), rtol=1e-5, atol=1e-6)
    try:
        train(s, cfg, TrainConfig(steps=1, batch_size=6), progress=False)
    except ValueError as e:
        assert "divisible" in str(e)
    else:
        raise AssertionError("batch_size 6 on 4 devices must raise")
    print("agree", many.history["loss"].tolist())
    """
)


def test_data_parallel_matches_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "agree" in out.stdout


def test_small_config_learns_the_synthetic_family():
    s = synthetic_sampler(64, 8, batch_size=64, context_length=32, n_features=16, seed=0)
    trained = train(s, model_config("small", n_features=16), TrainConfig(steps=400, batch_size=64, learning_rate=2e-3,
                                                                        log_every=50), progress=False)
    test = synthetic_eval_batch(s, 2000, seed=1)  # unseen runs of the same family
    q = trained.predict(test)
    mae = np.abs(q[:, trained.model_config.median_index] - test.target).mean()
    constant = np.abs(np.median(test.target) - test.target).mean()
    last = np.array([y[m][-1] for y, m in zip(test.ctx_y, test.ctx_mask)])
    persistence = np.abs(last - test.target).mean()
    assert mae < 0.5 * constant, (mae, constant)
    assert mae < 0.6 * persistence, (mae, persistence)  # learned the trend, not just "no change"
    assert (np.diff(q, axis=1) >= 0).all()
    inside = ((test.target >= q[:, 0]) & (test.target <= q[:, -1])).mean()  # nominal 80 %
    assert 0.5 < inside < 0.97, inside
