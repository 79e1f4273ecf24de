"""Why a trained cnn's P(hit) differs at inference: its batch normalisations' running statistics against its batches'.

Loads a fitted ``cnn`` model file (e.g. from the hitbench cache's ``models/`` after a scale-1 compare), draws
``--frames-per-run`` frames from the training share of each training run (the frames the comparison trains on
for ``--seed``: :func:`hitbench.bench.protocols.holdout_split`, 30 % held out), shuffles them into batches of
``--batch-size`` as training does, and for each batch normalisation compares, feature by feature (a row of the
first two, a unit of the dense one), the variance each batch of its input has with the moving variance
inference divides by. Inputs are computed in inference mode up to the layer. Also records the median P(hit)
of the drawn hits and the share above 0.5. docs/methods.md reads the scale-1 figures.

Usage: python benchmarks/cnn_batchnorm_stats.py MODEL.hbm [--scale 1] [--cache-dir DIR] [--out FILE]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import arguments, training_shares, write_result

from hitbench.bench.data import default_cache_dir
from hitbench.methods import tf_runtime
from hitbench.modelfile import load_model

PRESET = "cxi-streptavidin"
#: Each batch normalisation and the layer whose output it normalises (at inference: the first one's dropout, inside
#: it, passes conv1's output on as it is).
NORMALISED = {"bn_rows_pool1": "conv1", "bn_rows_pool2": "conv2", "bn_dense1": "dense1"}


def training_frames(scale: float, seed: int, per_run: int, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``per_run`` frames of each training run's training share, shuffled (seeded), with their peak labels."""
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for run, train, train_labels in training_shares(PRESET, scale, seed, cache_dir):
        chosen = np.sort(rng.choice(len(train), min(per_run, len(train)), replace=False))
        frames.append(run.read_at(train[chosen]))
        labels.append(train_labels[chosen])
    order = rng.permutation(sum(len(x) for x in labels))
    return np.concatenate(frames)[order], np.concatenate(labels)[order]


def batch_statistics(model, frames: np.ndarray, batch_size: int) -> dict[str, dict[str, float]]:
    """Per batch normalisation: its moving variance against the variances of the batches' inputs."""
    keras = tf_runtime.keras()
    network, out = model.model_, {}
    for layer, source in NORMALISED.items():
        upto = keras.Model(network.inputs, network.get_layer(source).output)
        means, variances = [], []
        for start in range(0, len(frames) - batch_size + 1, batch_size):
            x = model._keras_input(frames[start : start + batch_size])
            values = np.asarray(upto(x, training=False), dtype=np.float64)
            axes = (0, 2, 3) if values.ndim == 4 else (0,)
            means.append(values.mean(axis=axes))
            variances.append(values.var(axis=axes))
        means, variances = np.stack(means), np.stack(variances)
        pooled = (variances + means**2).mean(axis=0) - means.mean(axis=0) ** 2
        moving = np.asarray(network.get_layer(layer).moving_variance, dtype=np.float64)
        median = np.median(variances, axis=0)
        out[layer] = {
            "moving_over_median_batch_variance": float(np.median(moving / median)),
            "mean_over_median_batch_variance": float(np.median(variances.mean(axis=0) / median)),
            "moving_over_pooled_variance": float(np.median(moving / pooled)),
            "share_of_batches_below_moving_variance": float(np.mean(variances < moving)),
        }
    return out


def main() -> None:
    parser = arguments(__doc__, "cnn_batchnorm_stats_scale1.json")
    parser.add_argument("model", type=Path, help="a fitted cnn model file")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="the comparison's seed (its training share)")
    parser.add_argument("--frames-per-run", type=int, default=750)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    model = load_model(args.model)
    frames, labels = training_frames(args.scale, args.seed, args.frames_per_run, args.cache_dir or default_cache_dir())
    scores = model.decision_function(frames)
    hits = labels == 1
    write_result(
        args.out,
        {
            "model": args.model.name,
            "params": {k: v for k, v in model.get_params().items() if k != "verbose"},
            "frames": len(labels),
            "hits": int(hits.sum()),
            "batch_size": args.batch_size,
            "normalisations": batch_statistics(model, frames, args.batch_size),
            "hits_median_p_hit": float(np.median(scores[hits])),
            "hits_share_above_half": float(np.mean(scores[hits] > 0.5)),
            "misses_share_at_or_below_half": float(np.mean(scores[labels == 0] <= 0.5)),
            "fitted_threshold": float(model.threshold_),
        },
    )


if __name__ == "__main__":
    main()
