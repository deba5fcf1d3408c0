"""Neural Neural Scaling Laws (NeuNeu, Hu et al. 2026, arXiv 2601.19831) in Flax NNX.

A transformer reads a task's accuracy trajectory so far (and loss features of the target
checkpoint) and predicts quantiles of the accuracy at a later checkpoint, with no functional form.

    >>> from jaxscale.neuneu import model_config, train, TrainConfig, synthetic_sampler
    >>> sampler = synthetic_sampler(64, 8, batch_size=64, context_length=32, n_features=16, seed=0)
    >>> trained = train(sampler, model_config("small", n_features=16), TrainConfig(steps=300, batch_size=64))
    >>> trained.predict(sampler(10**6))   # [64, 5] quantiles (0.1, 0.25, 0.5, 0.75, 0.9)

Modules: `model` (architecture, `ModelConfig`, pinball loss), `train` (trainer, `Trained`),
`synthetic` (a learnable synthetic trajectory family), `batch` (the shared `Batch` format),
`samples` (real trajectories from tables, the OLMo ladder or lm-eval files; the sampler; the 20 %
evaluation protocol), `baselines` (logistic-of-loss, parametric-on-context, last value),
`protocol` (held-out runs/tasks/family splits, `neuneu_backtest`, `NeuNeuMethod`), `cli`.
"""

from jaxscale.neuneu.model import CONFIGS, ModelConfig, NeuNeu, count_params, model_config, pinball_loss
from jaxscale.neuneu.synthetic import SyntheticSampler, synthetic_eval_batch, synthetic_sampler
from jaxscale.neuneu.train import TrainConfig, Trained, train
from jaxscale.neuneu.samples import (
    FeatureNormalizer, Trajectories, TrajectorySampler, evaluation_batch, histogram_features, lm_loss_features,
)
from jaxscale.neuneu.baselines import context_law_baseline, last_value_baseline, logistic_baseline
from jaxscale.neuneu.protocol import (
    NeuNeuBacktest, NeuNeuForecaster, NeuNeuMethod, NeuNeuSplit, held_out_family, held_out_runs, held_out_tasks,
    neuneu_backtest, summarize, train_forecaster,
)

__all__ = [
    "ModelConfig", "CONFIGS", "model_config", "NeuNeu", "count_params", "pinball_loss",
    "TrainConfig", "Trained", "train",
    "SyntheticSampler", "synthetic_sampler", "synthetic_eval_batch",
    # real trajectories, baselines and the evaluation protocol
    "Trajectories", "TrajectorySampler", "FeatureNormalizer", "evaluation_batch", "lm_loss_features",
    "histogram_features", "logistic_baseline", "context_law_baseline", "last_value_baseline",
    "NeuNeuSplit", "held_out_runs", "held_out_tasks", "held_out_family", "NeuNeuForecaster", "NeuNeuBacktest",
    "neuneu_backtest", "train_forecaster", "summarize", "NeuNeuMethod",
]
