"""Bragg-peak finding (peakfinder8-style) and labelling CXI runs by their peak counts."""

from hitbench.peaks.peakfinder import PeakFinder8, Peaks

__all__ = ["PeakFinder8", "Peaks"]
