"""Bragg-peak finding (peakfinder8-style) and the peak-count labels of the reference study."""

from hitbench.labelrule import peak_labels
from hitbench.peaks.peakfinder import PeakFinder8, Peaks

__all__ = ["PeakFinder8", "Peaks", "peak_labels"]
