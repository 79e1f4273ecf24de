"""Simulated serial-crystallography runs: named experiments (TOML presets), frames, truth and CXI output.

>>> from hitbench.simulate import load_experiment, simulate_run
>>> exp = load_experiment("tiny")
>>> sim = simulate_run(exp, run=exp.runs[0], n_frames=4, seed=0)
>>> sim.frames.shape[0]
4
"""

from hitbench.simulate.presets import Experiment, load_experiment, preset_names
from hitbench.simulate.runs import SimulatedRun, simulate_run, write_experiment

__all__ = [
    "Experiment",
    "SimulatedRun",
    "load_experiment",
    "preset_names",
    "simulate_run",
    "write_experiment",
]
