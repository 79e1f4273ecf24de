"""How ``cnn-robust``'s spot-map settings were chosen: cross-validation on the training frames only.

Loads the default preset (cxi-streptavidin at its default scale, simulation seed 0, from the
hitbench cache, simulated and labelled on first use), takes the frames the comparison trains on for
seed 0 (the peak-labelled frames of the training runs 90-93 minus the 30 % held out,
:func:`hitbench.bench.protocols.holdout_split`) and runs
:func:`hitbench.methods.spot_search.spot_settings_search` on them. Writes the cross-validation table as
Markdown: one row per setting, mean and standard deviation of the folds' balanced accuracy, rank.

Usage: python benchmarks/robust_settings.py OUTPUT.md [CACHE_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _common import training_shares

from hitbench.bench.data import default_cache_dir
from hitbench.bench.display import markdown
from hitbench.bench.results_io import write_text
from hitbench.methods.spot_search import spot_settings_search

PRESET, SEED = "cxi-streptavidin", 0


def training_frames(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The default preset's training frames and peak labels as the comparison trains on them (seed 0)."""
    shares = training_shares(PRESET, None, SEED, cache_dir)
    frames = np.concatenate([run.read_at(train) for run, train, _ in shares]).astype(np.float32)
    return frames, np.concatenate([labels for _, _, labels in shares]).astype(np.int64)


def main(out: Path, cache_dir: Path) -> None:
    frames, labels = training_frames(cache_dir)
    search = spot_settings_search(frames, labels)
    results = pd.DataFrame(search.cv_results_)
    table = pd.DataFrame(
        {
            "threshold": results["param_spots__threshold"],
            "lone_false_alarms": results["param_spots__lone_false_alarms"].astype(object).fillna("none (neighbour)"),
            "BAcc (CV mean)": results["mean_test_score"],
            "BAcc (CV sd)": results["std_test_score"],
            "rank": results["rank_test_score"],
        }
    )
    lines = [
        f"Training frames: {len(labels)} ({int(labels.sum())} hits) of {PRESET} runs 90-93, seed {SEED}; "
        f"chosen: {search.best_params_}",
        "",
        markdown(table),
    ]
    write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else default_cache_dir())
