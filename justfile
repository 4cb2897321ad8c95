# maskline tasks. On a fresh machine run them through ./dev (it installs .venv first): ./dev demo, ./dev test
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv/bin"
export PATH := venv + ":" + env_var("PATH")

# list the recipes
default:
    @just --list

# start the embedded stack, segment the bundled sample, print where the outputs are, stop
demo *ARGS:
    @maskline demo {{ARGS}}

# start the embedded stack in the background (MASKLINE_* variables choose ports and home)
up:
    maskline up

# stop the embedded stack
down:
    maskline down

# processes and readiness of the embedded stack
status:
    maskline status

# the whole test suite: unit, integration (real nats-server, tritonserver, S3 wire) and end to end
test *ARGS:
    @pytest {{ARGS}}

# unit tests only (no servers)
test-unit *ARGS:
    pytest -m unit {{ARGS}}

# ruff, mypy (strict), stale schemas and chart system file, compose validation
lint: typecheck
    ruff check .
    ruff format --check .
    python -m maskline.contracts.schema --check
    python -m maskline.infra.helm --check
    python -m maskline.infra.setting_names --check
    python -m maskline.infra.error_codes --check
    MASKLINE_API_KEYS=lint:lint MINIO_ROOT_PASSWORD=lint docker-compose -f compose.yaml config -q

# git hooks of .pre-commit-config.yaml: commit subjects of at most 72 characters, ruff on what you commit
hooks:
    pre-commit install

# mypy --strict over every distribution's src/ (the files and search path are in pyproject.toml)
typecheck:
    mypy

# the pure-Python client and contracts on other Pythons (each found under pyenv or on PATH): a venv per version, installed from PyPI under constraints.txt, their unit tests run there
check-pythons *VERSIONS="3.12 3.13":
    #!/usr/bin/env bash
    set -euo pipefail
    for v in {{VERSIONS}}; do
      py=$(ls -d "$HOME"/.pyenv/versions/"$v"*/bin/python 2>/dev/null | tail -1 || true)
      py=${py:-$(command -v "python$v" || true)}
      if [ -z "$py" ] || ! "$py" -c pass 2>/dev/null; then echo "python $v: not found here"; continue; fi
      home=$(mktemp -d) && "$py" -m venv "$home/venv"
      "$home/venv/bin/pip" install -q -c constraints.txt ./contracts ./client pytest pytest-asyncio pytest-timeout jsonschema hypothesis
      echo "python $v ($py):" && "$home/venv/bin/python" -m pytest -q -p no:cacheprovider --noconftest tests/client tests/contracts/test_draft07.py
      rm -rf "$home"
    done

# every container image (podman, on a Debian base made from this machine's apt sources): sizes to docs/bench/images.json
images *TARGETS:
    python -m maskline.infra.images {{TARGETS}}

# compose.yaml on podman with local stand-ins for registry images: up, smoke tests, a fault, down
# (STEP: all, up, smoke, fault, down); times to docs/bench/compose.json
compose STEP="all":
    python -m maskline.infra.compose {{STEP}}

# the Helm chart's rendering started as pods with podman kube play, a segmentation through the
# gateway pod, then removed (--keep to leave them); results to docs/bench/kube-play.json
kube-play *ARGS:
    python -m maskline.infra.kube_play {{ARGS}}

# regenerate the published JSON Schemas from the contracts
schemas:
    python -m maskline.contracts.schema

# throughput and latency: Triton directly vs the whole gateway → bus → services path (and with TTA)
bench *ARGS:
    python -m bench.pipeline --requests 200 --concurrency 1,4,8 {{ARGS}}

# the platform's own ceiling: the whole path with a model that answers at once (jobs per second per core)
bench-platform *ARGS:
    python -m bench.pipeline --null-model --requests 200 --concurrency 1,4,8 {{ARGS}}

# TTA quality on the held-out set, and augmentation throughput
bench-augment:
    python -m bench.tta --images 256
    python -m bench.augment --images 60

# retrain the starter model (about 12 minutes on 2 cores) and rewrite the bundled samples
train:
    python -m maskline.models.starter.train --out models/src/maskline/models/starter/weights --steps 2000 --batch 12
    python -m maskline.models.starter.make_samples

# FP32 vs HYBRID vs INT8 through Triton, every calibrator's held-out mIoU, sizes (docs/benchmarks.md)
bench-quantize:
    python -m bench.quantize --requests 300 --concurrency 1,4 --rounds 5 --out docs/bench/quantize.json

# real models: stretch vs letterbox vs tiles on the starter's held-out set; the person model
# FP32 vs INT8 (ONNX QDQ) through Triton, quality against MediaPipe (needs .venv-reference: ./dev test makes it);
# what a request costs Triton beside the network (FP32 and INT8, dynamic-batching delay 0 and 2000 µs)
bench-models:
    python -m bench.aspect --images 256 --out docs/bench/aspect-0.2.json
    python -m bench.person_int8 --requests 200 --concurrency 1,4 --rounds 5 --out docs/bench/person-int8-0.4.json
    python -m bench.serving_cost --out docs/bench/serving-cost.json

# promptable segmentation on the bundled path: mIoU with one box per held-out shape, IoU on photos
# of people against MediaPipe, first and following prompts' latency (needs .venv-reference)
bench-prompts:
    python -m bench.prompts --images 64 --repeats 20 --out docs/bench/prompts.json

# training through the platform against the same loop in one process (medians of 3, same run)
bench-training:
    python -m bench.training --rounds 3 --out docs/bench/training.json

# merge time and memory (2/4/8 x 27.5M-param models), and the federated merging study on digits
# (in-process, then its independent-initialisation condition through the running services: sites
# uploading updates, then sites training by train jobs)
bench-merge:
    python -m bench.merge_weights
    python -m bench.federated_study
    python -m bench.federated_services
    python -m bench.federated_training

# drift test on the shapes model: false flags of unchanged windows with and without the chance floor, photos flagged (docs/monitoring.md)
bench-drift:
    python -m bench.drift_calibration

# what a person's key or session costs a request, and what a password sign-in costs (issue 32)
bench-sign-in:
    python -m bench.sign_in --out docs/bench/sign-in-32.json

# fuzz the gateway's OpenAPI with schemathesis against a fresh stack: every phase, 100 examples per operation, 0 5xx allowed
fuzz *ARGS:
    MASKLINE_FUZZ_EXAMPLES=100 MASKLINE_FUZZ_PHASES=examples,coverage,fuzzing,stateful MASKLINE_FUZZ_SECONDS=1800 pytest tests/e2e/test_fuzz.py {{ARGS}}

# chaos suite on fresh stacks (~40 min): kill -9 each program under load, a worker paused past the duplicate window, Triton, infer and the object store down 5 min, NATS down 30 s, 10x overload, the SEG leader of a 3-node NATS cluster killed (docs/reliability.md); one: --scenarios overload
chaos *ARGS:
    python -m bench.chaos --out docs/bench/chaos.json {{ARGS}}
