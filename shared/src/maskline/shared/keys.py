"""The one place object keys are made and read back: `<area>/<tenant>/...`.

Every key a service writes starts with an area and the tenant that owns the bytes (for models:
the model's owner). That is what makes a reference checkable: a service that reads an object
named in an event first asks `tenant_of(key)` and refuses a key outside the event's tenant.
"""

from __future__ import annotations

import hashlib
import re

AREAS = ("inputs", "outputs", "datasets", "models", "federations")
#: Triton's model repository in the object store (its own layout; see triton_repository_file).
TRITON_AREA = "triton"

#: What each identity may do in each area of the bucket: "read", or "write" (which includes read
#: and delete). Least privilege for the object store, as the subject table is for the bus: MinIO
#: policies are generated from it (`maskline credentials`), and the embedded stack's filesystem
#: store enforces it too (MASKLINE_STORE_CHECK_ACCESS), so a missing grant shows in every test run.
STORE_ACCESS: dict[str, dict[str, str]] = {
    "admin": {area: "write" for area in (*AREAS, TRITON_AREA)},  # provisioning: seeds the bundled models
    "gateway": {"inputs": "write", "outputs": "read", "datasets": "write", "models": "write", "federations": "write"},
    "ingest": {"inputs": "write"},
    "augment": {"inputs": "write", "datasets": "write"},
    "infer": {"inputs": "read", "outputs": "write", "datasets": "read", "models": "read", TRITON_AREA: "write"},
    "merge": {"inputs": "read", "outputs": "write"},
    "weights": {"inputs": "read", "models": "write", "federations": "read", "datasets": "read"},
    "quantize": {"inputs": "read", "outputs": "write", "datasets": "read", "models": "write"},
    "train": {"datasets": "read", "models": "write", "federations": "write"},  # federations: sites' updates
    "audit": {},
    "notify": {},
    "triton": {TRITON_AREA: "read"},
}
#: One path segment: no separators, no leading dot (so never `.` or `..`).
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=-]{0,199}$")
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class InvalidKey(ValueError):
    """A key that no service would ever write: wrong area, empty or dotted segments, bad tenant."""


def check(key: str) -> str:
    """`key` itself when it is well formed (`<area>/<tenant>/<segment>/...`), else InvalidKey."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] not in AREAS:
        raise InvalidKey(f"object key {key!r} is not <area>/<tenant>/...; areas: {', '.join(AREAS)}")
    if not _TENANT.match(parts[1]):
        raise InvalidKey(f"object key {key!r} names no valid tenant")
    if any(not _SEGMENT.match(p) for p in parts[2:]):
        raise InvalidKey(f"object key {key!r} has an empty, dotted or oversized path segment")
    return key


def tenant_of(key: str) -> str:
    """The tenant (or model owner) a well-formed key belongs to."""
    return check(key).split("/", 2)[1]


def segment(value: str, what: str) -> str:
    """`value` as one safe path segment (a file or dataset name from a client), else InvalidKey."""
    if not _SEGMENT.match(value):
        raise InvalidKey(f"{what} {value!r} must match [A-Za-z0-9_][A-Za-z0-9._=-]{{0,199}}")
    return value


# -- inputs: what clients hand over, and what ingest and augment derive from it ---------------------


def upload(tenant: str, sha256: str) -> str:
    """An image handed over before any job names it (`POST /v1/uploads`); content-addressed."""
    return f"inputs/{tenant}/uploads/{sha256}"


def model_upload(tenant: str, sha256: str) -> str:
    """Model weights streamed before their registration names them; content-addressed."""
    return f"inputs/{tenant}/model-uploads/{segment(sha256, 'sha256')}"


def job_upload(tenant: str, job_id: str, sha256: str) -> str:
    """The upload of a job; content-addressed, so a second request can never overwrite it."""
    return f"inputs/{tenant}/{job_id}/upload-{sha256[:16]}"


def normalised_image(tenant: str, job_id: str) -> str:
    return f"inputs/{tenant}/{job_id}/image.png"


def working_image(tenant: str, job_id: str) -> str:
    """The working copy of an image, its pixels as they are (`formats.PIXELS`): inference, TTA and
    the overlay read it without decoding; bounded in size for a large image."""
    return f"inputs/{tenant}/{job_id}/working.npy"


def variant_image(tenant: str, job_id: str, index: int, variant: str) -> str:
    """One TTA variant of the working copy (`formats.PIXELS`)."""
    return f"inputs/{tenant}/{job_id}/variants/{index}-{variant}.npy"


# -- outputs ------------------------------------------------------------------------------------


def prediction(tenant: str, job_id: str) -> str:
    return f"outputs/{tenant}/{job_id}/probs.npy"


def variant_prediction(tenant: str, job_id: str, index: int, variant: str) -> str:
    return f"outputs/{tenant}/{job_id}/variants/{index}-{variant}.npy"


def artifact(tenant: str, job_id: str, filename: str, attempt: str = "") -> str:
    """An output of a job; under the attempt that made it, so a late attempt never overwrites the winner's."""
    return f"outputs/{tenant}/{job_id}/{attempt}/{filename}" if attempt else f"outputs/{tenant}/{job_id}/{filename}"


def evaluation(tenant: str, owner: str, name: str, version: int, dataset_sha256: str) -> str:
    """A tenant's evaluation of one model version (its own, or one it may use) on one dataset's content."""
    return f"outputs/{tenant}/evaluations/{owner}/{name}/{version}/{segment(dataset_sha256[:16], 'dataset hash')}.json"


def evaluations(tenant: str, owner: str, name: str, version: int) -> str:
    return f"outputs/{tenant}/evaluations/{owner}/{name}/{version}/"


def evaluation_mask(tenant: str, owner: str, name: str, version: int, dataset_sha256: str, image: str) -> str:
    """The mask a version predicted for one image of an evaluated dataset (PNG of class ids)."""
    stem = segment(image.rsplit(".", 1)[0], "image name")
    return f"{evaluation(tenant, owner, name, version, dataset_sha256).removesuffix('.json')}/{stem}.png"


def follow_up_job(job_id: str, what: str) -> str:
    """The job a job asks for when it is done (the evaluation of a merged or quantized version)."""
    return f"{job_id}-{what}"[:128]


# -- datasets -----------------------------------------------------------------------------------


def dataset(tenant: str, name: str) -> str:
    """Prefix of a dataset: `images/<file>`, `masks/<file>` and `manifest.json` live under it."""
    return f"datasets/{tenant}/{segment(name, 'dataset name')}/"


def dataset_file(tenant: str, name: str, part: str, filename: str) -> str:
    """One file of a dataset: `part` is `images` or `masks`."""
    return f"{dataset_part(dataset(tenant, name), part)}{segment(filename, 'file name')}"


IMAGES, MASKS = "images", "masks"
#: A dataset's parts: its images, and masks named after them (`<image stem>.png`, a class id per pixel).
DATASET_PARTS = (IMAGES, MASKS)


def dataset_part(prefix: str, part: str) -> str:
    """`<prefix>images/` or `<prefix>masks/`: where a dataset (a prefix `dataset` made) keeps a part."""
    if part not in DATASET_PARTS:
        raise InvalidKey(f"a dataset has parts {', '.join(DATASET_PARTS)}, not {part!r}")
    return f"{prefix.rstrip('/')}/{part}/"


def dataset_mask_of(prefix: str, image_key: str) -> str:
    """The key of the mask of a dataset's image (whether or not it exists)."""
    return f"{dataset_part(prefix, MASKS)}{stem_of(image_key)}.png"


def dataset_manifest(prefix: str) -> str:
    """An expanded dataset's manifest (augment writes it beside the variants)."""
    return f"{prefix.rstrip('/')}/manifest.json"


def expanded_file(prefix: str, part: str, stem: str, variant: str) -> str:
    """One variant of a dataset file in the expanded dataset at `prefix` (`<stem>__<variant>.png`)."""
    return f"{dataset_part(prefix, part)}{stem}__{variant}.png"


def stem_of(key: str) -> str:
    """A file's name without its folder and extension (an image and its mask share it)."""
    return key.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def in_dataset_of(prefix: str, tenant: str) -> bool:
    """`prefix` names a dataset of `tenant` (what a job's dataset field must be)."""
    parts = prefix.rstrip("/").split("/")
    return len(parts) == 3 and parts[0] == "datasets" and parts[1] == tenant and bool(_SEGMENT.match(parts[2]))


# -- models (owner = the tenant that owns the model) --------------------------------------------


def model_folder(owner: str, name: str, version: int) -> str:
    return f"models/{owner}/{name}/{version}"


def model_weights(owner: str, name: str, version: int, sha256: str, suffix: str = "pt") -> str:
    """Content-addressed inside the version folder: two registrations racing for one version
    number can never overwrite each other's file (the loser retries with the next number)."""
    return f"{model_folder(owner, name, version)}/model-{sha256[:16]}.{suffix}"


def model_graph(owner: str, name: str, version: int) -> str:
    """Graph JSON of a float version, written by the quantize service when the version is registered."""
    return f"{model_folder(owner, name, version)}/graph.json"


def quantize_folder(owner: str, name: str, job_id: str) -> str:
    """Reports, recipe and done marker of one quantize or edit job."""
    return f"models/{owner}/{name}/quantize/{job_id}"


def merge_marker(owner: str, name: str, job_id: str) -> str:
    """Written after a merge job registered its version: a redelivery answers with the same version."""
    return f"models/{owner}/{name}/merges/{job_id}.json"


#: Training runs (and sweeps, in `_sweeps`) live beside the tenant's models, under folders no model
#: name can take (names start with a letter or digit).
RUNS = "_runs"


def runs(tenant: str) -> str:
    """Every training run of `tenant`: `<run>/run.json` once it finished."""
    return f"models/{tenant}/{RUNS}/"


def training_run(tenant: str, run: str) -> str:
    """A finished run's record (`TrainingRun`): how its version was made."""
    return f"{runs(tenant)}{run}/run.json"


def training_curve(tenant: str, run: str) -> str:
    """A run's curve so far (CurvePoint JSON list), rewritten at each report: what a sweep prunes on."""
    return f"{runs(tenant)}{run}/curve.json"


def sweep_state(tenant: str, job_id: str) -> str:
    """A sweep's trials so far (asked, reported, told): a sweep taken up again rebuilds its study from it."""
    return f"models/{tenant}/_sweeps/{job_id}/state.json"


def sweep_view(tenant: str, job_id: str) -> str:
    """A sweep's trials as its tenant reads them (`Swept`), rewritten as each trial ends."""
    return f"models/{tenant}/_sweeps/{job_id}/view.json"


def training_checkpoint(tenant: str, run: str) -> str:
    """The last checkpoint of a run in progress: weights, optimiser, schedule, random state, curve."""
    return f"{runs(tenant)}{run}/checkpoint.pt"


def round_marker(owner: str, name: str, federation: str, round_: int) -> str:
    return f"models/{owner}/{name}/rounds/{federation}-{round_}.json"


# -- federations --------------------------------------------------------------------------------


def site_update(tenant: str, federation: str, round_: int, site: str, digest: str = "") -> str:
    """A site's update for a round; `digest` names a trained one by its content (the train service),
    so bytes a round accepted are never replaced by a later run."""
    return f"federations/{tenant}/{federation}/{round_}/{site}{'-' + digest if digest else ''}.pt"


def site_training(site: str, owner: str, federation: str) -> str:
    """A site's consent to train every round of `owner`'s federation through maskline (its own part
    of the store: only the site writes it, through the gateway)."""
    return f"models/{site}/_federations/{owner}/{federation}.json"


def site_training_job(owner: str, federation: str, round_: int) -> str:
    """The job id of a site's training for one round (the site is the job's tenant). The same id from
    whoever starts it (the gateway at enrolment, the train service when the round opens), so the
    bus's duplicate window and the job's fence keep it one job; hashed, since federation ids chosen
    by outside systems may be long and two owners may pick the same."""
    digest = hashlib.sha256(f"{owner}/{federation}".encode()).hexdigest()[:16]
    return f"{SITE_TRAINING_JOB}{digest}-r{round_}"


#: The prefix of the jobs a site's consent starts: such a job submits only while the consent stands.
SITE_TRAINING_JOB = "fed-"


# -- Triton's model repository, when it lives in the object store ---------------------------------


def triton_repository_file(prefix: str, relative: str) -> str:
    """A file of Triton's S3 model repository: `<prefix>/<model>/<version>/<file>`. Not tenant data
    (Triton's own layout, read by Triton alone; the model folder is `owner.name`), so outside `AREAS`:
    no event ever names one of these keys."""
    return f"{prefix.strip('/')}/{relative}"
