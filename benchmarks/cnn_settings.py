"""How the cnn's input normalisation and dropout rate were chosen: the loss on a validation split of training frames.

Table I of the reference study names three dropout layers but not their rate, nor how the frames were scaled
before the network, so hitbench chooses both.
This script loads a preset's simulated runs (from the hitbench cache, simulated and labelled on first
use), takes the frames a comparison trains on for the given seed (the peak-labelled frames of the
training runs minus the 30 % held out for testing, :func:`hitbench.bench.protocols.holdout_split`),
sets a stratified tenth of them aside as validation frames, trains the cnn on the rest for each setting
(normalisation x rate) and each training seed, and records the validation frames' cross-entropy, ROC AUC and balanced
accuracy at P(hit) > 0.5. No test frame, other run or other experiment is read. The setting with the
lowest mean validation loss over the seeds is the one chosen.

Usage: python benchmarks/cnn_settings.py [--scale 1] [--normalisations log1p,linear] [--rates 0,0.25]
[--seeds 0,1] [--epochs 1] [--batch-size 20] [--class-weight balanced] [--out FILE]

The committed choices: ``--scale 1 --out benchmarks/results/cnn_settings_scale1.json`` (one epoch at the study's
scale), the same with the study's ``--batch-size 100 --class-weight none --out
benchmarks/results/cnn_settings_scale1_study.json`` (for the run with the study's settings) and ``--epochs 40 --out
benchmarks/results/cnn_settings_default_scale.json`` (the preset's default scale).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import arguments, load_average, machine, training_shares, write_result
from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from hitbench.bench.data import default_cache_dir
from hitbench.bench.display import markdown
from hitbench.data.dataset import RunFrames, run_labels
from hitbench.methods.cnn import ReferenceCNN

VALIDATION = 0.1


def validation_split(
    preset: str, scale: float | None, seed: int, cache_dir: Path
) -> tuple[RunFrames, np.ndarray, RunFrames, np.ndarray]:
    """The comparison's training frames for ``seed``, split into training and validation frames (stratified)."""
    train_parts, val_parts = [], []
    for run, train, labels in training_shares(preset, scale, seed, cache_dir):  # the test frames are never read
        fit, val = train_test_split(train, test_size=VALIDATION, stratify=labels, random_state=seed)
        train_parts.append((run, np.sort(fit)))
        val_parts.append((run, np.sort(val)))

    def labelled(parts: list) -> tuple[RunFrames, np.ndarray]:
        return RunFrames(parts), np.concatenate([run_labels(run, "peaks")[idx] for run, idx in parts])

    return (*labelled(train_parts), *labelled(val_parts))


def main() -> None:
    parser = arguments(__doc__, "cnn_settings.json")
    parser.add_argument("--preset", default="cxi-streptavidin")
    parser.add_argument("--scale", type=float, default=None, help="fraction of the preset's events (default: its own)")
    parser.add_argument("--normalisations", default="log1p,linear", help="input normalisations to try")
    parser.add_argument("--rates", default="0,0.25", help="dropout rates to try")
    parser.add_argument("--seeds", default="0,1", help="training seeds (also of the splits)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--class-weight", default="balanced", choices=["balanced", "none"])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    class_weight = None if args.class_weight == "none" else "balanced"
    rows, load_before = [], load_average()
    for seed in (int(s) for s in args.seeds.split(",")):
        train, y_train, val, y_val = validation_split(args.preset, args.scale, seed, args.cache_dir)
        val_frames = val.to_array()
        settings = [(n, float(r)) for n in args.normalisations.split(",") for r in args.rates.split(",")]
        for normalisation, rate in settings:
            cnn = ReferenceCNN(
                normalisation=normalisation,
                dropout=rate,
                epochs=args.epochs,
                batch_size=args.batch_size,
                class_weight=class_weight,
                random_state=seed,
            )
            start = time.perf_counter()
            cnn.fit(train, y_train)
            seconds = time.perf_counter() - start
            p_hit = cnn.decision_function(val_frames).astype(np.float64)
            rows.append(
                {
                    "normalisation": normalisation,
                    "dropout": rate,
                    "seed": seed,
                    "train frames": len(y_train),
                    "validation frames": len(y_val),
                    "validation loss": log_loss(y_val, np.clip(p_hit, 1e-7, 1 - 1e-7), labels=[0, 1]),
                    "validation AUC": roc_auc_score(y_val, p_hit),
                    "validation BAcc": balanced_accuracy_score(y_val, p_hit > 0.5),
                    "training loss (last epoch)": cnn.history_["loss"][-1],
                    "fit s": seconds,
                }
            )
            print(markdown(pd.DataFrame(rows[-1:])), flush=True)
    table = pd.DataFrame(rows)
    means = table.groupby(["normalisation", "dropout"])[["validation loss", "validation AUC", "validation BAcc"]].mean()
    print(markdown(table))
    print(markdown(means.reset_index()))
    write_result(
        args.out,
        {
            "preset": args.preset,
            "scale": args.scale,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "class_weight": class_weight,
            "runs": table.to_dict(orient="records"),
            "mean_over_seeds": means.reset_index().to_dict(orient="records"),
            "chosen": dict(zip(("normalisation", "dropout"), means["validation loss"].idxmin(), strict=True)),
            "machine": machine(load_before),
        },
    )


if __name__ == "__main__":
    main()
