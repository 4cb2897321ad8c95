"""`maskline`: run the embedded stack and use the gateway from a terminal.

maskline demo                       start everything, segment a sample, print the outputs, stop
maskline up | down | status         run the embedded stack in the background (supervised: crashes restart)
maskline restart PROGRAM            restart one service, nats or triton
maskline submit IMAGE [--wait S]    segment an image, download its artifacts
maskline datasets segment NAME      a dataset run: segment every image, write one COCO / Label Studio export
maskline cancel JOB | replay JOB    cancel a segmentation; re-run one and check its outputs match
maskline federation start | watch | stop | model | submit   federated runs over HTTP (see federation_cli)
maskline models list | register     the model registry
maskline alias list | set | rollback | rollout   aliases: promote, roll back, canary, shadow (see rollout_cli)
maskline users list | add | role | rm   the people of a tenant and their roles (see people_cli)
maskline runs train | list | show | compare | reproduce | cancel   training runs (see training_cli)
maskline audit | access | credentials   trust: verify the audit trail, share models (see trust_cli)
maskline traces [--port 4318]       a local trace viewer: receive OTLP spans, print each job's trace as a tree
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
import stamina.instrumentation

from maskline import federation_cli, people_cli, report_tables, rollout_cli, training_cli, trust_cli
from maskline.cli_conventions import (
    ExitCode,
    Verb,
    add_global_options,
    completion_script,
    exit_code_for,
    follow_job,
    global_options_everywhere,
    print_result,
    usage_error,
    verbs,
)
from maskline.client import ApiError, JsonClient
from maskline.contracts import seg_v1
from maskline.contracts import subjects as table
from maskline.contracts.http_v1 import EXPORT_FORMATS
from maskline.contracts.model_v1 import SAM_PREPROCESSING, Preprocessing
from maskline.infra.embedded.settings import StackSettings
from maskline.infra.embedded.stack import Stack
from maskline.shared.config import load
from maskline.shared.version import CODE_VERSION


def sample_image() -> Path:
    return Path(str(resources.files("maskline.models.starter").joinpath("samples/shapes-1.png")))


def sample_photo() -> Path:
    """A real photo of a person (scikit-image's astronaut, NASA, public domain) for `person-selfie`."""
    return Path(str(resources.files("maskline.models.person").joinpath("samples/astronaut.jpg")))


def start_with_progress(stack: Stack, args: argparse.Namespace) -> None:
    """`stack.up()` with a spinner naming the step under way (none with --json)."""
    from rich.console import Console

    if args.json:
        stack.up()
        return
    started = time.monotonic()
    with Console(stderr=True).status("starting the embedded stack") as status:
        stack.up(on_step=lambda step: status.update(f"{step} ({time.monotonic() - started:.0f} s)"))


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load(StackSettings)
    stack = Stack(settings)
    started = time.monotonic()
    print(f"starting the embedded stack in {stack.home} ...", flush=True)
    start_with_progress(stack, args)
    try:
        print(f"stack ready in {time.monotonic() - started:.1f}s; gateway {stack.gateway_url}", flush=True)
        client = JsonClient(stack.gateway_url, api_key=args.api_key)
        if args.image:
            return _demo_one(client, Path(args.image), args.model, Path(args.out))
        # the starter on its own kind of image, then the person model on a real photo
        for image, model in ((sample_image(), "shapes-unet"), (sample_photo(), "person-selfie")):
            if _demo_one(client, image, model, Path(args.out)):
                return 1
        return 0
    finally:
        stack.down()
        print("stack stopped", flush=True)


def _demo_one(client: JsonClient, image: Path, model: str | None, out: Path) -> int:
    job = client.submit(image, wait=120, model=model)
    if job["status"] != "completed":
        print(f"segmentation did not complete: {job}", file=sys.stderr)
        return 1
    paths = client.download(job, out.resolve() / job["id"])
    regions = json.loads(paths["regions"].read_text())
    print(
        f"\nsegmented {image.name} ({job['width']}x{job['height']}) with {job['model']['name']} "
        f"v{job['model']['version']}: {job['regions']} regions, timings {job['timings_ms']}" + confidence_line(job)
    )
    for region in regions["regions"]:
        print(
            f"  region {region['id']}: {region['label']:<9} area {region['area']:>6} bbox {region['bbox']} "
            f"score {region['score']:.3f}"
        )
    print(f"mask:    {paths['mask']}\noverlay: {paths['overlay']}\nregions: {paths['regions']}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    settings = load(StackSettings)
    if args.nats_cluster:
        settings = msgspec.structs.replace(settings, nats_cluster=args.nats_cluster)
    if Stack.attach(settings):
        print(f"a stack is already recorded in {settings.home}; run `maskline down` first", file=sys.stderr)
        return 1
    stack = Stack(settings)
    start_with_progress(stack, args)
    bus = f"NATS {stack.nats_url}" + (f" ({len(stack.nats_nodes)} nodes, streams R3)" if len(stack.nats_nodes) > 1 else "")
    print(f"stack up: gateway {stack.gateway_url}, {bus}, logs in {stack.home / 'logs'}; stop with `maskline down`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack = Stack.attach(load(StackSettings))
    if stack is None:
        print("no stack running here")
        return 0
    stack.down()
    print("stack stopped")
    return 0


def confidence_line(job: dict[str, Any]) -> str:
    """The out-of-domain signal, in words a person reads before trusting the mask."""
    c = job.get("confidence")
    if not c:
        return ""
    low = c["uncertain_fraction"] > seg_v1.LOW_CONFIDENCE_ABOVE
    verdict = " — low: the image may be outside what this model knows" if low else ""
    return (
        f"\n  confidence: mean probability {c['mean_probability']:.3f}, "
        f"{100 * c['uncertain_fraction']:.1f}% of pixels below {c['uncertain_below']}{verdict}"
    )


def cmd_status(args: argparse.Namespace) -> int:
    if args.job:
        job = JsonClient(args.url, api_key=args.api_key).status(args.job)
        timings = ", ".join(f"{k} {v:.0f} ms" for k, v in job.get("timings_ms", {}).items())
        error = f"\n  error: {job['error']}" if job.get("error") else ""
        line = f"job {job['id']}: {job['status']}" + (f" ({timings})" if timings else "") + confidence_line(job) + error
        print_result(args, job, line)
        return 0 if job["status"] != "failed" else 1
    stack = Stack.attach(load(StackSettings))
    if stack is None:
        print_result(args, {"running": False}, "no stack running here")
        return 1
    status = stack.status()
    lines = [f"gateway {status['gateway']} ready={status['ready']}"]
    lines += [
        f"  {name:<10} pid {p['pid']:<8} {p['state'].upper():<9} up {p['uptime_s']:>8.1f} s  restarts {p['restarts']}"
        for name, p in status["processes"].items()
    ]
    print_result(args, status, "\n".join(lines))
    return 0 if status["ready"] else 1


def cmd_restart(args: argparse.Namespace) -> int:
    stack = Stack.attach(load(StackSettings))
    if stack is None:
        print("no stack running here", file=sys.stderr)
        return 1
    pid = stack.restart(args.program)
    print_result(args, {"program": args.program, "pid": pid}, f"restarted {args.program} (pid {pid})")
    return 0


#: A segmentation's statuses on its way to completed, in order, from the system table.
STAGES = tuple(
    sorted(
        {s.job_status for s in table.SUBJECTS if s.stream == "SEG" and s.job_status not in (None, "failed", "cancelled")},
        key=lambda status: table.JOB_STATUS_RANK[status],
    )
)


def _follow_stages(client: JsonClient, args: argparse.Namespace, job: dict[str, Any]) -> dict[str, Any]:
    """A progress bar over the segmentation's stages until it completes or fails."""
    from rich.progress import Progress

    stages = [s for s in STAGES if s != "augmented" or args.tta]
    with Progress(disable=args.json) as bar:
        task = bar.add_task(f"job {job['id'][:12]}", total=len(stages) - 1)
        if job["status"] not in table.FINAL_STATUSES:
            for view in client.follow(job["id"], timeout=args.wait):  # pushed by the gateway: no polling
                if view["status"] in stages:
                    bar.update(task, completed=stages.index(view["status"]), description=f"job {job['id'][:12]} {view['status']}")
    return client.status(job["id"])  # the segmentation's own view: artifacts, regions, confidence


def _numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise SystemExit(f"{what} takes {count} comma-separated numbers, not {text!r}")
    return values


def _prompts(args: argparse.Namespace) -> str | None:
    """--box, --point, --not-point and --everything as the `prompts` form field (JSON)."""
    try:
        boxes = [seg_v1.Box(*_numbers(b, 4, "--box")) for b in args.box]
    except ValueError as exc:  # corners in the wrong order
        raise SystemExit(f"--box: {exc}") from exc

    def point(text: str, what: str, label: Literal[0, 1]) -> seg_v1.Point:
        x, y = _numbers(text, 2, what)
        return seg_v1.Point(x, y, label)

    points = [point(p, "--point", 1) for p in args.point] + [point(p, "--not-point", 0) for p in args.not_point]
    if not (boxes or points or args.everything):
        return None
    try:
        prompts = seg_v1.Prompts(objects=seg_v1.prompt_objects(boxes, points), everything=args.everything)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    return msgspec.json.encode(prompts).decode()


def cmd_submit(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    job = client.submit(
        Path(args.image),
        wait=0,
        model=args.model,
        version=args.version,
        precision=args.precision,
        alias=args.alias,
        tta=args.tta or None,
        prompts=_prompts(args),
    )
    job = _follow_stages(client, args, job)
    if job["status"] == "completed" and args.out:
        job["files"] = {k: str(v) for k, v in client.download(job, Path(args.out) / job["id"]).items()}
    error = f"\n  error: {job['error']}" if job.get("error") else ""
    print_result(
        args,
        job,
        f"job {job['id']}: {job['status']}"
        + confidence_line(job)
        + "".join(f"\n  object {o['index']}: score {o['score']}, {o['area']} px, box {o['bbox']}" for o in job.get("objects", ()))
        + "".join(f"\n  {k}: {v}" for k, v in job.get("files", {}).items())
        + error,
    )
    return 0 if job["status"] == "completed" else 1


def cmd_get(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    job = client.status(args.job)
    if job["status"] != "completed":
        print_result(args, job, f"job {job['id']} is {job['status']}: nothing to download yet")
        return 1
    files = {k: str(v) for k, v in client.download(job, Path(args.out) / job["id"]).items()}
    print_result(args, files, "\n".join(f"{k}: {v}" for k, v in files.items()))
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    fleet = JsonClient(args.url, api_key=args.api_key).services()
    lines = [f"{'service':<10} {'state':<9} instances"]
    for s in fleet["services"]:
        instances = ", ".join(f"{i['instance']} {i['state']} ({i['last_heartbeat_s_ago']}s ago)" for i in s["instances"])
        lines.append(f"{s['name']:<10} {s['state']:<9} {instances}")
    lines.append(f"\n{'stream':<8} {'consumer':<18} {'pending':>8} {'in flight':>10}")
    lines += [f"{q['stream']:<8} {q['consumer']:<18} {q['pending']:>8} {q['in_flight']:>10}" for q in fleet["queues"]]
    lines.append(f"\ndead letters: {fleet['dead_letters']}")
    print_result(args, fleet, "\n".join(lines))
    return 0 if all(s["state"] == "up" for s in fleet["services"]) else 1


def cmd_dlq(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "redrive":
        if not args.seq:
            raise usage_error("dlq redrive needs the letters' sequence numbers")
        done = [client.redrive(seq) for seq in args.seq]
        print_result(args, done, "\n".join(f"re-drove {d['seq']} to {d['subject']} (job {d['job_id']})" for d in done))
        return 0
    letters = client.dead_letters()
    lines = [f"{'seq':>6} {'consumer':<16} {'code':<20} reason"]
    lines += [f"{d['seq']:>6} {d['consumer']:<16} {d['code']:<20} {d['reason'][:80]}" for d in letters]
    print_result(args, letters, "\n".join(lines) if letters else "the dead-letter queue is empty")
    return 0


def cmd_files(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "list":
        listing = client.files(args.area)
        lines = [f"{f['area']:<9} {f['size']:>10}  {str(f['modified'])[:19]}  {f['path']}" for f in listing["files"]]
        lines.append(f"{listing['count']} files, {listing['total_bytes']} bytes")
        print_result(args, listing, "\n".join(lines))
        return 0
    if not args.area or not args.path:
        raise usage_error(f"files {args.action} needs --area and a path")
    if args.action == "get":
        target = Path(args.out) / args.path.replace("/", "_")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.download_file(args.area, args.path))
        print_result(args, {"saved": str(target)}, f"saved {target}")
        return 0
    client.delete_file(args.area, args.path)
    print_result(args, {"deleted": f"{args.area}/{args.path}"}, f"deleted {args.area}/{args.path}")
    return 0


@contextmanager
def upload_progress(args: argparse.Namespace) -> Iterator[Callable[[int, int], None]]:
    """A progress bar of the bytes sent (weights of a few GB take a while); none with --json."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    columns = ("uploading weights", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, disable=args.json) as bar:
        task = bar.add_task("upload", total=None)
        yield lambda sent, total: bar.update(task, completed=sent, total=total)


def _preprocessing(args: argparse.Namespace) -> Preprocessing:
    described: dict[str, Any] = {"resize": "letterbox" if args.letterbox else "stretch"}
    if args.decoder:  # a SAM pair: its own preprocessing
        return SAM_PREPROCESSING
    for field in ("mean", "std"):
        if getattr(args, field):
            described[field] = tuple(float(v) for v in getattr(args, field).split(","))
    return msgspec.convert(described, Preprocessing)


def cmd_models(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "merge":
        refs = [(ref.split(":")[0], int(ref.split(":")[1])) for ref in args.refs]
        weights = [float(w) for w in args.weights_by.split(",")] if args.weights_by else None
        job = client.merge_models(
            refs, name=args.name, method=args.method, weights=weights, bn_dataset=args.bn_dataset, evaluate_on=args.evaluate_on
        )
        job = client.wait_job(job["id"])
        print_result(args, job, f"merge {job['status']}: {job['links'].get('model', job['error'])}")
        return 0 if job["status"] == "completed" else 1
    if args.action in ("quantize", "edit", "graph", "report"):
        return _quantize_verbs(client, args)
    if args.action in ("evaluate", "evaluations", "compare"):
        return _evaluation_verbs(client, args)
    if args.action == "release":
        name, version = _ref(args.refs[0]) if args.refs else ("", 0)
        model = client.release_model(name, version)
        print_result(args, model, f"{model['name']} version {model['version']} is stable now: requests naming no version run it")
        return 0
    if args.action == "register":
        height, width = (int(v) for v in args.input_size.split(","))
        with upload_progress(args) as progress:
            model = client.register_model(
                Path(args.weights),
                progress=progress,
                name=args.name,
                labels=args.labels.split(","),
                input_size=(height, width),
                format="sam" if args.decoder else args.format,
                output=args.output,
                output_kind=args.output_kind,
                preprocessing=_preprocessing(args),
                decoder=Path(args.decoder) if args.decoder else None,
            )
        print_result(args, model, f"registered {model['name']} version {model['version']}")
        return 0
    models = client.models()
    print_result(
        args,
        models,
        "\n".join(
            f"{m['owner'] + '/' + m['name']:<32} v{m['version']:<4} {m['precision']:<6} {','.join(m['labels'])}" for m in models
        ),
    )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    job = JsonClient(args.url, api_key=args.api_key).cancel(args.job)
    print_result(args, job, f"{job['id']}: {job['status']}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    view = JsonClient(args.url, api_key=args.api_key).replay(args.job, wait=args.wait)
    lines = [f"replay {view['replay']} of {view['original']}: {view['status']}"]
    for name, output in view["outputs"].items():
        again = (output["replay_sha256"] or "-")[:16]
        lines.append(f"  {name:<8} {output['original_sha256'][:16]} {again:<16} {'match' if output['match'] else 'DIFFERS'}")
    print_result(args, view, "\n".join(lines))
    return 0 if view["reproduced"] else 1


def cmd_datasets(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "upload":
        from rich.progress import Progress

        with Progress(disable=args.json) as bar:
            for path in bar.track(list(map(Path, args.files)), description=f"uploading to {args.name}"):
                client.upload_dataset_file(args.name, "images", path.read_bytes(), path.name)
                mask = Path(args.masks) / f"{path.stem}.png" if args.masks else None
                if mask is not None and mask.exists():
                    client.upload_dataset_file(args.name, "masks", mask.read_bytes(), mask.name)
        print_result(args, client.dataset(args.name), f"uploaded {len(args.files)} images to dataset {args.name}")
        return 0
    if args.action == "segment":
        return _segment_dataset(client, args)
    if args.action == "show":
        view = client.dataset(args.name)
        print_result(
            args, view, f"{args.name}: {len(view['images'])} images, {len(view['masks'])} masks, manifest={view['manifest']}"
        )
        return 0
    job = client.expand_dataset(args.name, target=args.target, angle=args.angle, blur_sigma=args.blur_sigma)
    job = follow_job(client, args, job, f"expanding {args.name}")
    print_result(args, job, f"job {job['id']}: {job['status']} {job['progress']}" + (f" {job['error']}" if job["error"] else ""))
    return 0 if job["status"] == "completed" else 1


def cmd_traces(args: argparse.Namespace) -> int:
    from maskline.infra import trace_viewer

    trace_viewer.serve(args.port, quiet_s=args.quiet_s)
    return 0


def _segment_dataset(client: JsonClient, args: argparse.Namespace) -> int:
    """A dataset run: every image segmented, then one export of all of them (`--format`, `--out`)."""
    from rich.progress import Progress

    with Progress(disable=args.json) as bar:
        task = bar.add_task(f"segmenting {args.name}", total=None)
        jobs = client.segment_dataset(
            args.name,
            max_images=args.max_images,
            model=args.model,
            on_done=lambda done, total: bar.update(task, completed=done, total=total),
        )
    failed = [j["image"] for j in jobs if j["status"] != "completed"]
    completed = [j["id"] for j in jobs if j["status"] == "completed"]
    out = Path(args.out or f"{args.name}-{args.format}.{'xml' if args.format.endswith('config') else 'json'}")
    if completed:
        out.write_bytes(client.export_segmentations(completed, args.format))
    summary = {"images": len(jobs), "completed": completed, "failed": failed, "export": str(out)}
    print_result(args, summary, f"{len(completed)} of {len(jobs)} images segmented; {args.format} export: {out}")
    return 0 if completed and not failed else 1


def _ref(text: str) -> tuple[str, int]:
    name, _, version = text.partition(":")
    if not version.isdigit():
        raise usage_error(f"give a model as name:version, not {text!r}")
    return name, int(version)


def _quantize_verbs(client: JsonClient, args: argparse.Namespace) -> int:
    name, version = _ref(args.refs[0]) if args.refs else ("", 0)
    if not name:
        raise usage_error(f"models {args.action} needs a model as name:version")
    if args.action == "quantize":
        job = client.quantize(
            name,
            version,
            dataset=args.dataset,
            method=args.method if args.method != "avg" else None,
            precision=args.precision,
            per_channel=not args.per_tensor,
            keep_float=args.keep_float.split(",") if args.keep_float else None,
            compare_calibrators=args.compare or None,
            name=args.name,
            evaluate_on=args.evaluate_on,
        )
        job = follow_job(client, args, job, f"quantizing {name}:{version}")
        print_result(args, job, f"quantize {job['status']}: {job['links'].get('model', job['error'])}")
        return 0 if job["status"] == "completed" else 1
    if args.action == "edit":
        edit = {"output_scale": args.output_scale, "weight_scale": args.weight_scale}
        job = follow_job(client, args, client.edit_layer(name, version, layer=args.layer, **edit), f"editing {args.layer}")
        print_result(args, job, f"edit {job['status']}: {job['links'].get('model', job['error'])}")
        return 0 if job["status"] == "completed" else 1
    if args.action == "graph":
        graph = client.graph(name, version)
        print_result(args, graph, "\n".join(f"{n['id']:<28} {n['type']:<22} {n['shape']}" for n in graph["nodes"]))
        return 0
    report = client.report(name, version, args.kind, args.layer)
    print_result(args, report, report_tables.TABLES[args.kind](report))
    return 0


def _evaluation_verbs(client: JsonClient, args: argparse.Namespace) -> int:
    if args.action == "compare":
        if len(args.refs) != 1 or not args.versions or not args.dataset:
            raise usage_error("models compare NAME --versions 1,2,... --dataset DATASET")
        view = client.compare(args.refs[0], [int(v) for v in args.versions.split(",")], args.dataset, owner=args.owner)
        print_result(args, view, report_tables.comparison(view))
        return 0
    name, version = _ref(args.refs[0]) if args.refs else ("", 0)
    if not name:
        raise usage_error(f"models {args.action} needs a model as name:version")
    if args.action == "evaluations":
        found = client.evaluations(name, version, owner=args.owner)
        print_result(args, found, "\n\n".join(report_tables.evaluation(e) for e in found) or "no evaluations yet")
        return 0
    if not args.dataset:
        raise usage_error("models evaluate needs --dataset (one of your datasets with masks)")
    job = client.evaluate(name, version, dataset=args.dataset, owner=args.owner)
    job = follow_job(client, args, job, f"evaluating {name}:{version}")
    if job["status"] != "completed":
        print_result(args, job, f"evaluation {job['status']}: {job['error']}")
        return 1
    result = client.evaluations(name, version, owner=args.owner)[0]
    print_result(args, result, report_tables.evaluation(result))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_global_options(p, at_top=True)
    p.add_argument("--version", action="version", version=f"maskline {CODE_VERSION}")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start everything, segment the bundled samples (shapes, a photo), print outputs, stop")
    demo.add_argument("--image", help="an image of your own instead of the bundled samples")
    demo.add_argument("--model", help="with --image: the model to run (default: the platform's default)")
    demo.add_argument("--out", default="out", help="folder for the downloaded artifacts")
    demo.set_defaults(run=cmd_demo)
    up = sub.add_parser("up", help="start the embedded stack in the background")
    up.add_argument(
        "--nats-cluster",
        type=int,
        default=0,
        help="run the bus as a cluster of N nats-servers on loopback (3: replicated streams; MASKLINE_NATS_CLUSTER)",
    )
    up.set_defaults(run=cmd_up)
    sub.add_parser("down", help="stop the embedded stack").set_defaults(run=cmd_down)
    restart = sub.add_parser("restart", help="restart one program of the embedded stack (a service, nats or triton)")
    restart.add_argument("program")
    restart.set_defaults(run=cmd_restart)
    status = sub.add_parser("status", help="a job's status, or (no job) the embedded stack's processes")
    status.add_argument("job", nargs="?")
    status.set_defaults(run=cmd_status)
    get = sub.add_parser("get", help="download a completed job's mask, overlay and regions")
    get.add_argument("job")
    get.add_argument("--out", default="out")
    get.set_defaults(run=cmd_get)
    sub.add_parser("services", help="the fleet: instances, stage queues, dead letters").set_defaults(run=cmd_services)
    verbs(
        sub,
        "dlq",
        "list or re-drive dead letters",
        lambda dlq: dlq.add_argument("seq", nargs="+", type=int, help="the letters' sequence numbers (from list)"),
        {"list": Verb("the dead letters, newest first"), "redrive": Verb("re-process letters by their consumer", ("seq",))},
        cmd_dlq,
    )
    trust_cli.add_parsers(sub)
    traces = sub.add_parser("traces", help="a local trace viewer: point OTEL_EXPORTER_OTLP_ENDPOINT here, see each trace")
    traces.add_argument("--port", type=int, default=4318, help="OTLP/HTTP port (4318 is the standard one)")
    traces.add_argument("--quiet-s", type=float, default=2.0, help="print a trace once no span came for this long")
    traces.set_defaults(run=cmd_traces)
    rollout_cli.add_parsers(sub)
    people_cli.add_parsers(sub)
    federation_cli.add_parsers(sub)
    training_cli.add_parsers(sub)
    verbs(
        sub,
        "files",
        "your inputs, outputs, datasets and models: list, get, rm",
        _file_options,
        {
            "list": Verb("your stored files, with sizes", ("area",)),
            "get": Verb("download one file", ("path", "area", "out")),
            "rm": Verb("delete one file", ("path", "area")),
        },
        cmd_files,
    )
    submit = sub.add_parser("submit", help="segment an image")
    submit.add_argument("image")
    submit.add_argument("--wait", type=float, default=60.0)
    submit.add_argument("--model", default=None)
    submit.add_argument("--version", type=int, default=None)
    submit.add_argument("--out", default="out")
    submit.add_argument("--tta", action="store_true", help="test-time augmentation (5 variants, fused)")
    submit.add_argument("--precision", choices=["fp32", "hybrid", "int8"], help="the alias's version in this precision")
    submit.add_argument("--alias", help="the model's alias to run (default: stable)")
    prompt = submit.add_argument_group("prompts (promptable segmentation, docs/prompts.md)")
    prompt.add_argument(
        "--box", action="append", default=[], metavar="X0,Y0,X1,Y1", help="an object inside this box (one per box)"
    )
    prompt.add_argument("--point", action="append", default=[], metavar="X,Y", help="a point on the object (joins its box)")
    prompt.add_argument("--not-point", action="append", default=[], metavar="X,Y", help="a point that is not the object")
    prompt.add_argument("--everything", action="store_true", help="every object the model finds (a grid of point prompts)")
    submit.set_defaults(run=cmd_submit)
    cancel = sub.add_parser("cancel", help="cancel a segmentation wherever it is (no outputs stand)")
    cancel.add_argument("job")
    cancel.set_defaults(run=cmd_cancel)
    replay = sub.add_parser("replay", help="re-run a completed segmentation from its audit record; exit 1 unless outputs match")
    replay.add_argument("job")
    replay.add_argument("--wait", type=float, default=120.0)
    replay.set_defaults(run=cmd_replay)
    verbs(
        sub,
        "datasets",
        "upload, show, expand or segment a dataset",
        _dataset_options,
        {
            "upload": Verb("upload images (and masks) into a dataset", ("name", "files", "masks")),
            "show": Verb("a dataset's images, masks and manifest", ("name",)),
            "expand": Verb("expand a dataset with the five variants (a job)", ("name", "target", "angle", "blur_sigma")),
            "segment": Verb(
                "segment every image, write one COCO / Label Studio export", ("name", "model", "format", "out", "max_images")
            ),
        },
        cmd_datasets,
    )
    one = ("refs",)
    verbs(
        sub,
        "models",
        "the model registry: list, register, merge, quantize, evaluate, compare ...",
        _model_options,
        {
            "list": Verb("the models you can run"),
            "register": Verb(
                "register a TorchScript, ONNX or SAM-format (--decoder) model as a new version",
                (
                    "weights",
                    "name",
                    "labels",
                    "input_size",
                    "format",
                    "output",
                    "output_kind",
                    "letterbox",
                    "mean",
                    "std",
                    "decoder",
                ),
            ),
            "merge": Verb(
                "merge versions (name:version ...) into a new version",
                ("refs", "method", "weights_by", "bn_dataset", "evaluate_on", "name"),
            ),
            "quantize": Verb(
                "quantize a float version to HYBRID or INT8",
                (*one, "dataset", "method", "precision", "per_tensor", "keep_float", "compare", "name", "evaluate_on"),
            ),
            "report": Verb("a quantized version's STEP, CROSS, calibrator or travel report", (*one, "kind", "layer")),
            "graph": Verb("a version's layers, types and shapes", one),
            "edit": Verb("edit one int8 layer's scales (a new version)", (*one, "layer", "output_scale", "weight_scale")),
            "release": Verb("make a version stable: what requests naming no version run", one),
            "evaluate": Verb("score a version on one of your datasets with masks", (*one, "dataset", "owner")),
            "evaluations": Verb("a version's evaluations, newest first", (*one, "owner")),
            "compare": Verb("versions of a model side by side on one dataset", (*one, "versions", "dataset", "owner")),
        },
        cmd_models,
    )
    completion = sub.add_parser("completion", help="print the shell code that completes maskline's commands")
    completion.add_argument("shell", choices=["bash", "zsh", "fish", "tcsh"])
    completion.set_defaults(run=cmd_completion)
    global_options_everywhere(p)
    return p


def _file_options(files: argparse.ArgumentParser) -> None:
    files.add_argument("path", help="the path shown by list (models: name/version)")
    files.add_argument("--area", choices=["inputs", "outputs", "datasets", "models"])
    files.add_argument("--out", default="out")


def _dataset_options(datasets: argparse.ArgumentParser) -> None:
    datasets.add_argument("name")
    datasets.add_argument("files", nargs="*", help="images to upload")
    datasets.add_argument("--masks", help="folder with <image stem>.png masks to upload alongside")
    datasets.add_argument("--target", help="name of the expanded dataset (default <name>-aug)")
    datasets.add_argument("--angle", type=float, default=None)
    datasets.add_argument("--blur-sigma", type=float, default=None)
    datasets.add_argument("--model", default=None, help="the model (default the platform's default)")
    datasets.add_argument("--format", default="coco-dataset", choices=EXPORT_FORMATS)
    datasets.add_argument("--out", help="where to write the export (default <name>-<format>.json)")
    datasets.add_argument("--max-images", type=int, default=1000)


def _model_options(models: argparse.ArgumentParser) -> None:
    models.add_argument("refs", nargs="*", help="name:version (merge: one per model; compare: the model's name)")
    models.add_argument(
        "--method",
        default="avg",
        help="merge: avg, max, absmax, weighted, median, task_arithmetic, ties; quantize: minmax, entropy, log2, percentile",
    )
    models.add_argument("--dataset", help="quantize: calibration dataset; evaluate, compare: a dataset with masks")
    models.add_argument("--evaluate-on", help="quantize, merge: evaluate the new version on this dataset with masks")
    models.add_argument("--versions", help="compare: comma-separated versions of the model")
    models.add_argument("--owner", help="evaluate, evaluations, compare: the owner of a model shared with you (or maskline)")
    models.add_argument("--precision", choices=["int8", "hybrid"], default="int8", help="quantize")
    models.add_argument("--per-tensor", action="store_true", help="quantize: per-tensor weight scales")
    models.add_argument("--keep-float", help="quantize: comma-separated layers to leave in float")
    models.add_argument("--compare", action="store_true", help="quantize: also compare every calibrator")
    models.add_argument("--kind", default="step", choices=["step", "cross", "calibrators", "travel"], help="report")
    models.add_argument("--layer", help="report: one layer; edit: the layer to edit")
    models.add_argument("--output-scale", type=float, help="edit: new output scale")
    models.add_argument("--weight-scale", type=float, help="edit: new weight scale")
    models.add_argument("--weights-by", help="merge (weighted): comma-separated sample counts")
    models.add_argument("--bn-dataset", help="merge: re-estimate BatchNorm statistics on this dataset's images")
    models.add_argument("--weights")
    models.add_argument("--name")
    models.add_argument("--labels", help="comma-separated, background first")
    models.add_argument("--input-size", default="128,128", help="height,width")
    models.add_argument("--format", default="", choices=["", "torchscript", "onnx"], help="register (default: from the file)")
    models.add_argument("--output", default="", help="register: the output (or dict key) that holds the class scores")
    models.add_argument("--output-kind", default="logits", choices=["logits", "probabilities"], help="register")
    models.add_argument("--letterbox", action="store_true", help="register: keep the aspect ratio, pad to the input size")
    models.add_argument("--mean", help="register: per-channel mean after scaling, e.g. 0.485,0.456,0.406")
    models.add_argument("--std", help="register: per-channel standard deviation, e.g. 0.229,0.224,0.225")
    models.add_argument(
        "--decoder",
        help="register: a SAM-format pair's prompt decoder (ONNX); --weights is then its image encoder (docs/prompts.md)",
    )


def say_retry(details: stamina.instrumentation.RetryDetails) -> None:
    print(f"maskline: {details.caused_by}; trying again in {details.wait_for:.1f} s", file=sys.stderr)


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.shell))
    return ExitCode.OK


def main(argv: list[str] | None = None) -> None:
    """Exit codes (cli_conventions.ExitCode, docs/cli.md): 0 done, 1 the job failed or a check did not
    pass, 2 a wrong command line, 3 refused by the gateway (4xx), 4 the platform unavailable (5xx,
    no connection) after the retries."""
    import argcomplete

    commands = parser()
    argcomplete.autocomplete(commands)  # answers a shell's completion request, then exits
    args = commands.parse_args(argv)
    # A retry is said on stderr, in a line: stamina's default (structlog) would print to stdout, into --json output.
    stamina.instrumentation.set_on_retry_hooks([say_retry])
    try:
        raise SystemExit(args.run(args))
    except (ApiError, httpx.TransportError) as exc:
        print(f"maskline: {exc}", file=sys.stderr)
        raise SystemExit(exit_code_for(exc)) from exc


if __name__ == "__main__":
    main()
