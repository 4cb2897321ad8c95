"""Merge time and peak memory for 2, 4 and 8 models of a ~25 M-parameter network.

    python -m bench.merge_weights [--methods avg,absmax,median]

Each run is a fresh subprocess that streams the state dicts from disk (`torch.load(mmap=True)`) and
samples its anonymous resident memory (RssAnon: what merging allocates; the file pages of the
memory-mapped inputs are cache, not allocation) every 2 ms. One model = 25.2 M float32 = 101 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SHAPES = [(2048, 1024)] * 12 + [(256, 256, 3, 3)] * 4 + [(1024,)] * 8  # 25.2 M parameters

MEASURE = """
import sys, time, threading, pathlib, torch
from maskline.services.weights.methods import MergeOptions
from maskline.services.weights.streaming import merge_states
torch.set_num_threads(2)
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1]) * 1024
method, paths = sys.argv[1], [pathlib.Path(p) for p in sys.argv[2:]]
before = anon(); peak = before; stop = False
def sample():
    global peak
    while not stop:
        peak = max(peak, anon()); time.sleep(0.002)
t = threading.Thread(target=sample); t.start()
started = time.perf_counter()
merged = merge_states(paths, [str(p) for p in paths], method, MergeOptions(weights=tuple(range(1, len(paths) + 1))))
seconds = time.perf_counter() - started
stop = True; t.join()
print(seconds, max(peak, anon()) - before)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="avg,absmax,weighted,median")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    one_model = sum(torch.Size(s).numel() for s in SHAPES) * 4
    results = []
    with tempfile.TemporaryDirectory(prefix="maskline-merge-bench-") as tmp:
        paths = []
        for i in range(8):
            g = torch.Generator().manual_seed(i)
            state = {f"layer{k}": torch.randn(s, generator=g) for k, s in enumerate(SHAPES)}
            path = Path(tmp) / f"m{i}.pt"
            torch.save(state, path)
            paths.append(path)
            del state
        for method in args.methods.split(","):
            for count in (2, 4, 8):
                runs = []
                for _ in range(args.repeat):
                    out = subprocess.run(
                        [sys.executable, "-c", MEASURE, method, *map(str, paths[:count])],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    seconds, peak = out.stdout.split()
                    runs.append((float(seconds), int(peak)))
                results.append(
                    {
                        "method": method,
                        "models": count,
                        "seconds_median": round(statistics.median(r[0] for r in runs), 3),
                        "peak_alloc_mb_median": round(statistics.median(r[1] for r in runs) / 1e6, 1),
                        "peak_over_one_model": round(statistics.median(r[1] for r in runs) / one_model, 2),
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"parameters": one_model // 4, "one_model_mb": round(one_model / 1e6, 1), "results": results}, indent=2))


if __name__ == "__main__":
    main()
