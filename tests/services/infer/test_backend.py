"""The Python-backend model file as Triton's stub loads it, run in a fresh interpreter (it sets
process-wide torch state). `triton_python_backend_utils` exists only inside the stub, so an empty
module stands in for it: `initialize` does not use it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from maskline.models import person

pytestmark = pytest.mark.unit

LOAD = """
import json, sys, types
sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")
sys.path.insert(0, sys.argv[1])
import torch
import model
before = torch.get_num_threads()
instance = model.TritonPythonModel()
instance.initialize({"model_repository": sys.argv[2], "model_version": "1", "model_instance_kind": "CPU"})
print(json.dumps({"before": before, "after": torch.get_num_threads(), "run": instance.run.__name__}))
"""


@pytest.mark.parametrize("threads", ["1", "0"])
def test_an_onnx_version_runs_torchs_part_on_the_threads_it_was_given(tmp_path: Path, threads: str) -> None:
    """`execute` turns an ONNX version's scores into probabilities with torch. With torch's default
    pool (a thread per core) in each instance, Triton spent 14.5 ms of CPU per person-model request
    at concurrency 4 instead of 6.0 (docs/benchmarks.md): the stub must take the stack's setting."""
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.onnx").write_bytes(person.ONNX.read_bytes())
    (version / "model.json").write_text(json.dumps({"format": "onnx", "output": None, "kind": "logits", "precision": "fp32"}))
    backend = Path(str(resources.files("maskline.services.infer").joinpath("backend")))
    env = {"MASKLINE_TORCH_THREADS": threads, "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(backend), str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["run"] == "_run_onnx" and seen["before"] == 2
    assert seen["after"] == (1 if threads == "1" else 2)  # 0: torch's own default, as before
