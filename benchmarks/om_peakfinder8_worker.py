"""OM's compiled peakfinder8 on the frames bench_peakfinder_om.py wrote: times and peak lists as JSON.

Runs in OM's own virtual environment (ondamonitor needs numpy < 2), so it imports neither hitbench nor
anything numpy 2 needs. For every frame set of the .npz (``NAME/frames`` float32 (n, H, W), ``NAME/mask``
int8 (1 = good, pixels outside the resolution range already 0), ``NAME/radius`` float32, ``NAME/layout``
[asic_nx, asic_ny, nasics_x, nasics_y]) it times, after one untimed pass, the best of ``--repeats`` passes of:

- ``extension``: the compiled ``peakfinder_8`` called directly with the prepared arrays (OM's own work only);
- ``find_peaks``: ``Peakfinder8PeakDetection.find_peaks``, OM's public call (it also copies the frame to float32).

Usage: om-venv/bin/python benchmarks/om_peakfinder8_worker.py FRAMES.npz PARAMS.json OUT.json [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version

import numpy
from om.algorithms._crystallography import peakfinder_8
from om.algorithms.crystallography import Peakfinder8PeakDetection


def best_ms_per_frame(function, frames: numpy.ndarray, repeats: int) -> float:
    """Best of ``repeats`` passes over ``frames`` after one untimed pass, ms per frame."""
    for frame in frames:
        function(frame)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for frame in frames:
            function(frame)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times) / frames.shape[0]


def run_set(data: numpy.lib.npyio.NpzFile, name: str, params: dict, repeats: int) -> dict:
    """Times and peak lists of one frame set."""
    frames = data[f"{name}/frames"]
    mask = numpy.ascontiguousarray(data[f"{name}/mask"], dtype=numpy.int8)
    radius = numpy.ascontiguousarray(data[f"{name}/radius"], dtype=numpy.float32)
    asic_nx, asic_ny, nasics_x, nasics_y = (int(v) for v in data[f"{name}/layout"])

    def extension(frame: numpy.ndarray) -> tuple:
        return peakfinder_8(
            params["max_num_peaks"],
            frame,
            mask,
            radius,
            0,  # no fast mode: every pixel enters the radial statistics
            None,
            None,
            0,
            asic_nx,
            asic_ny,
            nasics_x,
            nasics_y,
            params["adc_threshold"],
            params["min_snr"],
            params["min_pixel_count"],
            params["max_pixel_count"],
            params["local_bg_radius"],
        )

    detection = Peakfinder8PeakDetection(
        radius_pixel_map=radius,
        layout_info={"asic_nx": asic_nx, "asic_ny": asic_ny, "nasics_x": nasics_x, "nasics_y": nasics_y},
        crystallography_parameters={
            "max_num_peaks": params["max_num_peaks"],
            "adc_threshold": params["adc_threshold"],
            "minimum_snr": params["min_snr"],
            "min_pixel_count": params["min_pixel_count"],
            "max_pixel_count": params["max_pixel_count"],
            "local_bg_radius": params["local_bg_radius"],
            "min_res": 0,
            "max_res": int(numpy.ceil(radius.max())) + 1,  # the resolution range is in the mask already
            "bad_pixel_map_filename": None,
        },
    )
    detection.set_bad_pixel_map(mask)
    peaks = []
    for frame in frames:
        fs, ss, intensity, _, npix, _, snr = extension(frame)[:7]  # [3]: first pixel, [5]: brightest, [7]: sigma
        peaks.append({"x": fs, "y": ss, "intensity": intensity, "npix": npix, "snr": snr})
    return {
        "frames": int(frames.shape[0]),
        "frame_shape": list(frames.shape[1:]),
        "extension_ms_per_frame": best_ms_per_frame(extension, frames, repeats),
        "find_peaks_ms_per_frame": best_ms_per_frame(lambda f: detection.find_peaks(data=f), frames, repeats),
        "peaks": peaks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", help=".npz written by bench_peakfinder_om.py")
    parser.add_argument("params", help="JSON of the finder's parameters")
    parser.add_argument("out", help="JSON to write")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    params = json.loads(open(args.params).read())
    with numpy.load(args.frames) as data:
        names = sorted({key.split("/")[0] for key in data.files})
        result = {
            "ondamonitor": version("ondamonitor"),
            "numpy": numpy.__version__,
            "sets": {name: run_set(data, name, params, args.repeats) for name in names},
        }
    with open(args.out, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
