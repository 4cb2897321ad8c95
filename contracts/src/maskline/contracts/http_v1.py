"""The HTTP API's JSON bodies and views, defined once: the gateway decodes and answers with them,
the Python client (`maskline.client`) sends and decodes them, OpenAPI is generated from them.

A body's defaults are the bus contract's defaults (read from the contract structs, not copied), so
an option left out over HTTP means what it means on the bus. Bodies refuse unknown fields (a typo
over HTTP is a 400); views skip them (an older client reads a newer gateway's answers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from maskline.contracts import account_v1, dataset_v1, model_v1, seg_v1, train_v1
from maskline.contracts.common_v1 import ModelRef, Variant, VariantName
from maskline.contracts.model_v1 import Architecture, CalibrationMethod, LayerEdit, MergeMethod, VersionRef
from maskline.contracts.subjects import FINAL_STATUSES, JobKind

_EXPAND = dataset_v1.DatasetExpandRequested(source="x/", target="y/")
_MERGE = model_v1.ModelMergeRequested(models=(), name="x")
_QUANTIZE = model_v1.QuantizeRequested(model=VersionRef("x", 1), dataset="x")
_EVALUATE = model_v1.EvaluateRequested(model=VersionRef("x", 1), dataset="x")
_TRAIN = train_v1.TrainRequested(name="x", dataset="x")
_SWEEP = train_v1.SweepRequested(training=_TRAIN, space={})
#: The defaults of a segmentation's options and its TTA, for forms that spell them out field by field.
SEGMENTATION_DEFAULTS = seg_v1.SegmentationOptions()
TTA_DEFAULTS = seg_v1.TtaOptions()


def job_links(kind: JobKind, job_id: str) -> dict[str, str]:
    """Where the API answers for a job: its own page (a segmentation's richer one) and its audit trail."""
    own = f"/v1/segmentations/{job_id}" if kind == "segmentation" else f"/v1/jobs/{job_id}"
    return {"self": own, "audit": f"/v1/audit?job={job_id}"}


# -- bodies -------------------------------------------------------------------------------------


class JobBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every body that starts a job may add."""

    webhook_url: str | None = None
    """Where to POST this job's end, signed with your webhook secret (PUT /v1/webhooks first). Added in 1.7."""


class ExpandRequest(JobBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/datasets/{name}/expand`: see `DatasetExpandRequested`."""

    target: str | None = None
    """Name of the expanded dataset; default `<name>-aug`."""
    variants: tuple[VariantName, ...] = _EXPAND.variants
    angle: float = _EXPAND.angle
    blur_sigma: float = _EXPAND.blur_sigma


class MergeBody(JobBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/models/merges`: see `ModelMergeRequested`; `bn_dataset` is one of your dataset names."""

    models: tuple[VersionRef, ...]
    name: str
    method: MergeMethod = _MERGE.method
    weights: tuple[float, ...] = _MERGE.weights
    base: VersionRef | None = None
    scale: float = _MERGE.scale
    density: float = _MERGE.density
    bn_dataset: str | None = None
    evaluate_on: str | None = None
    """One of your labelled datasets: the merged version is evaluated on it (job `<this job>-eval`)."""


class QuantizeBody(JobBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/models/quantizations`: see `QuantizeRequested`; `dataset` is one of your dataset names."""

    model: VersionRef
    dataset: str
    method: CalibrationMethod = _QUANTIZE.method
    precision: str = _QUANTIZE.precision
    per_channel: bool = _QUANTIZE.per_channel
    keep_float: tuple[str, ...] = _QUANTIZE.keep_float
    percentile: float = _QUANTIZE.percentile
    max_images: int = _QUANTIZE.max_images
    compare_calibrators: bool = _QUANTIZE.compare_calibrators
    name: str | None = None
    evaluate_on: str | None = None
    """One of your labelled datasets: the quantized version is evaluated on it (job `<this job>-eval`)."""


class EvaluateBody(JobBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/models/{name}/{version}/evaluations`: see `EvaluateRequested`; `dataset` is one of your dataset names."""

    dataset: str
    max_images: int = _EVALUATE.max_images
    boundary_tolerance: int = _EVALUATE.boundary_tolerance


class LayerEditBody(LayerEdit, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST .../edits`: a `LayerEdit`; over HTTP a misspelt field is refused (on the bus it is skipped)."""

    webhook_url: str | None = None
    """As `JobBody.webhook_url` (a `LayerEdit` is also a bus struct, so the field is repeated here). Added in 1.7."""

    def edit(self) -> LayerEdit:
        """The edit as the bus carries it: without the HTTP-only webhook."""
        return LayerEdit(**{name: getattr(self, name) for name in LayerEdit.__struct_fields__})


class TrainBody(JobBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/trainings`: see `TrainRequested`; `dataset` and `evaluate_on` are your dataset names."""

    name: str
    dataset: str
    base: VersionRef | None = None
    architecture: Architecture | None = None
    labels: tuple[str, ...] = _TRAIN.labels
    input_size: tuple[int, int] | None = None
    hyperparameters: train_v1.Hyperparameters = _TRAIN.hyperparameters
    evaluate_on: str | None = None
    """One of your labelled datasets, held out: the new version is evaluated on it (job `<this job>-eval`)."""
    experiment: str | None = None
    checkpoint_every: int = _TRAIN.checkpoint_every


class SweepBody(JobBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/sweeps`: see `SweepRequested`; `training` as the body of `POST /v1/trainings`."""

    training: TrainBody
    space: dict[train_v1.Searchable, train_v1.SearchDimension]
    trials: int = _SWEEP.trials
    parallel: int = _SWEEP.parallel
    sampler: str = _SWEEP.sampler
    pruning: bool = _SWEEP.pruning
    seed: int = _SWEEP.seed
    start_with: tuple[dict[train_v1.Searchable, train_v1.Choice], ...] = ()


# -- views ----------------------------------------------------------------------------------------


class DatasetView(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/datasets/{name}`: a dataset's files."""

    name: str
    images: list[str]
    masks: list[str]
    manifest: bool


class UploadView(msgspec.Struct, frozen=True, kw_only=True):
    """A reference to put in `seg.v1.requested` (`data.image`) when publishing straight onto NATS."""

    key: str
    size: int
    sha256: str
    content_type: str
    format: str


class WeightsUploadView(msgspec.Struct, frozen=True, kw_only=True):
    """Model weights streamed to `PUT /v1/models/weights/{sha256}`: register them by their sha256."""

    key: str
    size: int
    sha256: str


class JobError(msgspec.Struct, frozen=True, kw_only=True):
    stage: str
    code: str
    reason: str


class ArtifactView(msgspec.Struct, frozen=True, kw_only=True):
    href: str
    content_type: str
    size: int
    sha256: str


class SegmentationView(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/segmentations/{id}`: a segmentation's status, timings and outputs."""

    id: str
    status: str
    created: datetime
    updated: datetime
    options: seg_v1.SegmentationOptions
    filename: str | None = None
    model: ModelRef | None = None
    width: int | None = None
    height: int | None = None
    regions: int | None = None
    confidence: seg_v1.Confidence | None = None
    """How sure the model was overall: low values mean the mask is likely meaningless (docs/models.md)."""
    objects: tuple[seg_v1.ObjectFound, ...] = ()
    """A prompted job's objects, each with its predicted quality (docs/prompts.md)."""
    timings_ms: dict[str, float] = {}
    artifacts: dict[str, ArtifactView] = {}
    error: JobError | None = None
    links: dict[str, str] = {}

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/jobs/{id}`: any job's status and progress."""

    id: str
    kind: str
    status: str
    progress: dict[str, int]
    stage: str | None = None
    error: dict[str, str] | None
    links: dict[str, str]
    quiet_s: float = 0.0
    """Seconds since the job's last event."""
    waiting_for_worker: bool = False
    """Running, but nothing heard for longer than a worker's silence allows: no worker holds it now."""

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One training run in a list or a comparison (`GET /v1/runs/{run}` has the whole record)."""

    run: str
    name: str
    model: VersionRef | None
    """None for a federation site's run (its weights went to the round)."""
    base: VersionRef | None
    experiment: str | None
    dataset: str
    dataset_sha256: str
    hyperparameters: train_v1.Hyperparameters
    train_loss: float
    validation_miou: float | None
    evaluation_miou: float | None
    """The version's mIoU on the run's held-out `evaluate_on` dataset, once evaluated."""
    device: str
    seconds: float
    created: datetime
    reproduces: str | None = None


class RunComparison(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/runs/compare`: runs side by side, the hyper-parameters that differ, and whether the
    later runs drew the first one's curves again (a reproduction)."""

    runs: list[RunSummary]
    differing: dict[str, list[str]]
    """Hyper-parameter → its value in each run, for the ones that are not the same in all."""
    same_data: bool
    """Every run trained on the same content (dataset hash)."""
    exact: bool
    """Every run's curve (losses, learning rates, validation mIoUs) equals the first's, to the last digit."""
    max_difference: float
    """The largest difference of a loss or validation mIoU between a run and the first, step by step."""
    tolerance: float
    """What counts as the same where a run was not on the CPU (GPU kernels are not deterministic);
    on the CPU a reproduction must be exact."""
    reproduced: bool
    """exact on the CPU; within `tolerance` when any run used another device."""


class ShadowView(msgspec.Struct, frozen=True, kw_only=True):
    """How an alias's shadow version has agreed with the served one so far (means over `jobs`)."""

    version: int
    served: int
    """The alias's version at the last comparison."""
    jobs: int
    pixel_agreement: float
    miou: float
    min_pixel_agreement: float
    served_ms: float
    shadow_ms: float


class AliasView(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/models/{name}/aliases/{alias}`: the alias, and its shadow's figures when it has one."""

    alias: model_v1.Alias
    shadow: ShadowView | None = None


class PromoteBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/models/{name}/aliases/{alias}`: point the alias at one of your versions (create it,
    or promote), optionally only if a rule holds."""

    version: Annotated[int, msgspec.Meta(ge=1)]
    require_metric: str | None = None
    """Refuse (409 `promotion_refused`) unless the version's recorded metric of this name (for example
    `miou`) is at least the current version's."""
    require_shadow_agreement: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    """Refuse unless the version ran as this alias's shadow on at least `min_shadow_jobs` requests
    with at least this mean pixel agreement with the served masks."""
    min_shadow_jobs: Annotated[int, msgspec.Meta(ge=1)] = 20
    require_evaluation: str | None = None
    """One of your labelled datasets: refuse unless the version's newest evaluation on it has an mIoU
    at least the current version's (both evaluated on the same content)."""


class GuardBody(model_v1.RollbackGuard, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/models/{name}/aliases/{alias}/guard`: when the alias rolls itself back (at least one
    rule: `on_drift`, `max_error_rate` or `min_shadow_agreement`). Added in 1.13."""

    def guard(self) -> model_v1.RollbackGuard:
        return model_v1.RollbackGuard(**msgspec.structs.asdict(self))


class RolloutBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/models/{name}/aliases/{alias}/rollout`: the alias's canary split and shadow (null clears)."""

    canary: Annotated[int, msgspec.Meta(ge=1)] | None = None
    canary_percent: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 0.0
    shadow: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ComparedVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One version in a comparison: how it was made, and its evaluation on the dataset compared on."""

    version: int
    precision: str
    parent: str | None
    lineage: tuple[VersionRef, ...]
    method: str
    """How it was made: `registered`, `merge` or `quantize: <calibrator>` (with edits: `+ edits`)."""
    parameters: dict[str, object]
    size_bytes: int
    aliases: list[str]
    evaluation: model_v1.Evaluation | None
    """The newest evaluation on the dataset's current content (none: not evaluated on it yet)."""


class ComparisonView(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/models/{name}/compare`: versions side by side on one labelled dataset."""

    owner: str
    name: str
    dataset: str
    labels: tuple[str, ...]
    versions: list[ComparedVersion]
    differences: dict[str, str] = {}
    """Two versions evaluated on the same content: each image's picture of where their masks differ."""


class OutputMatch(msgspec.Struct, frozen=True, kw_only=True):
    original_sha256: str
    replay_sha256: str | None
    """None until the replay completed (or when it did not produce this output)."""
    match: bool
    """mask and overlay: the bytes are the same; regions: its content is (the document names its own
    job and timings, which a replay cannot share)."""


class ReplayView(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/segmentations/{id}/replay`: a finished job re-run from its audit record (same input,
    the version and precision that served it, the same options) and whether each output matches."""

    original: str
    replay: str
    status: str
    model: ModelRef
    outputs: dict[str, OutputMatch] = {}
    reproduced: bool = False
    """Every output matched."""
    links: dict[str, str] = {}


class FeatureMapsBody(JobBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/models/{name}/{version}/feature-maps`: one image of one of your datasets through the int8
    version and its float parent; one layer's channels drawn side by side (a job)."""

    layer: str
    dataset: str
    image: str
    """A file under the dataset's images."""
    channels: int = 16


_ROUND = model_v1.RoundOpened(round=1, rounds=1, model=VersionRef("x", 1), name="x", sites=("x",), quorum=1)


class FederationBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/federations`: start a federated run from one of the models you may use; each site
    is a tenant that takes part with its own API key."""

    name: str
    """Your model the rounds' merged versions are registered under."""
    model: VersionRef
    """The starting version."""
    sites: tuple[str, ...]
    quorum: int | None = None
    """Sites that must report by the deadline for a round to merge (default: all)."""
    rounds: int = _ROUND.rounds
    deadline_s: float = _ROUND.deadline_s
    method: MergeMethod = _ROUND.method
    evaluate_on: str | None = None
    """One of your datasets with masks: every round's merged version is evaluated on it."""


class SiteTrainingBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/federations/{federation}/training` (a site): train every round of this federation
    here, on one of your datasets with masks; see `train_v1.SiteTraining`. Added in 1.12."""

    dataset: str
    hyperparameters: train_v1.Hyperparameters = _TRAIN.hyperparameters
    architecture: Architecture | None = None
    """Round 1 from your own initialisation of this network (it must fit the federation's model)."""
    checkpoint_every: int = _TRAIN.checkpoint_every


class SiteTrainingView(msgspec.Struct, frozen=True, kw_only=True):
    """A site's consent to train a federation's rounds here, and the training of the open round."""

    federation: str
    owner: str
    training: train_v1.SiteTraining
    job: str | None = None
    """The open round's training job (yours), when the round is open to you."""
    links: dict[str, str] = {}


class FederationSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of `GET /v1/federations`: a run you own or take part in, as the weights service holds it."""

    id: str
    owner: str
    name: str
    round: int
    rounds: int
    sites: tuple[str, ...]
    reported: int
    """Sites whose update for the current round arrived."""
    state: str
    """`open` (the current round takes updates), `closed` (merged or failed; `final` when the last) or `stopped`."""
    links: dict[str, str] = {}


class SiteReport(msgspec.Struct, frozen=True, kw_only=True):
    site: str
    samples: int
    metrics: dict[str, float] = {}


class RoundView(msgspec.Struct, frozen=True, kw_only=True):
    round: int
    opened: datetime | None = None
    reported: list[SiteReport] = []
    missing: list[str] = []
    model: VersionRef | None = None
    """The round's merged global version, once closed."""
    evaluation: model_v1.Evaluation | None = None
    """The merged version's evaluation on the federation's held-out set, once done."""


class FederationView(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/federations/{id}`: a federated run, round by round, from its audit trail."""

    id: str
    owner: str
    name: str
    sites: tuple[str, ...]
    quorum: int
    rounds: int
    method: str
    status: str
    """running, completed, failed or stopped."""
    round: int
    """The latest round opened."""
    history: list[RoundView] = []
    error: JobError | None = None
    links: dict[str, str] = {}


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/webhooks`: where the tenant's jobs report their end (every kind of job)."""

    url: str | None = None
    """https://... (or http://); None keeps only a signing secret, for per-request `webhook_url`s."""
    rotate_secret: bool = False


class WebhookView(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None
    created: str
    secret: str | None = None
    """Only in the answer that made it: keep it to check `Maskline-Signature`."""


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON body POSTed to a webhook when a job ends (any kind: `kind` says which). Headers: `Maskline-Event` (the
    event type), `Maskline-Delivery` (the event's id: the same on every retry), and
    `Maskline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`."""

    type: str
    job_id: str
    tenant: str
    status: str
    time: datetime
    links: dict[str, str]
    error: JobError | None = None
    kind: JobKind = "segmentation"


#: `?format=` of regions and of `/v1/exports/segmentations` (the gateway's exports.py says what each is).
EXPORT_FORMATS = ("coco", "coco-dataset", "labelstudio", "labelstudio-brush", "labelstudio-config")


class Rle(msgspec.Struct, frozen=True):
    """COCO run-length encoding of a region (compressed counts, as pycocotools writes them)."""

    size: list[int]
    """[height, width], as COCO writes it."""
    counts: str


class Region(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    label: str
    class_id: int
    score: float
    """Mean probability of the region's class over its pixels."""
    area: int
    bbox: list[int]
    """[x, y, width, height] in pixels (COCO order)."""
    rle: Rle
    polygon: list[list[float]]
    """Outer contours as flat [x1, y1, x2, y2, ...] lists (COCO polygon format)."""


class RegionsDocument(msgspec.Struct, frozen=True, kw_only=True):
    """`regions.json`, the regions output of a segmentation (merge writes it; exports read it)."""

    job_id: str
    image: dict[str, int]
    model: ModelRef
    labels: tuple[str, ...]
    regions: list[Region]
    timings_ms: dict[str, float]
    variants: tuple[Variant, ...] = ()
    """TTA variants fused into the result, with their parameters."""
    confidence: seg_v1.Confidence | None = None
    """How sure the model was over the whole image (out-of-domain signal)."""
    objects: tuple[seg_v1.ObjectFound, ...] = ()
    """A prompted job's objects: score, area, box; each one's pixels are the regions labelled
    `object-<index>` (and the mask's value `index`)."""


#: A population stability index above this is a shift worth acting on (the usual rule of thumb:
#: below 0.1 stable, 0.1-0.25 moderate). Added in 1.13.
DRIFT_PSI = 0.25
#: Fewer live jobs than this in the window: no verdict (a handful of images says little).
MIN_WINDOW_JOBS = 30


class Drift(msgspec.Struct, frozen=True, kw_only=True):
    """A version's live window (your jobs on it) against its evaluation reference, feature by
    feature of `model_v1.QUALITY_BINS` (docs/monitoring.md). Added in 1.13."""

    window_hours: int
    jobs: int
    """Live jobs in the window with the watched features (prompted jobs have no confidence)."""
    psi: dict[str, float]
    """Population stability index by feature; absent where the window or the reference has none."""
    flagged: bool
    """Some feature's PSI is above `threshold`, over at least `min_jobs` jobs."""
    features: tuple[str, ...]
    """The features over the threshold."""
    out_of_domain_rate: float | None
    """Share of the window's jobs with more than `seg_v1.LOW_CONFIDENCE_ABOVE` uncertain pixels."""
    threshold: float = DRIFT_PSI
    min_jobs: int = MIN_WINDOW_JOBS
    reference_images: int = 0


class QualityHour(msgspec.Struct, frozen=True, kw_only=True):
    """One hour (UTC) of a version's finished jobs of yours. Added in 1.13."""

    start: datetime
    jobs: int
    failed: int
    out_of_domain: int
    canary: int
    latency_ms_mean: float | None
    latency_ms_p90: float | None
    """Upper edge of the latency bin the 90th percentile falls in (None: above the last edge)."""
    mean_probability: float | None
    uncertain_fraction: float | None
    brightness: float | None
    megapixels: float | None
    regions_mean: float | None
    failures: dict[str, int] = {}
    aliases: dict[str, int] = {}


class VersionQuality(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/models/{name}/{version}/quality`: how a version has done on your jobs, hour by hour,
    and its drift against your latest evaluation of it. Added in 1.13."""

    owner: str
    name: str
    version: int
    hours: tuple[QualityHour, ...]
    """The hours of the asked span that had jobs, oldest first."""
    drift: Drift | None
    """None until you evaluate the version (`POST .../evaluations`): the reference comes from that."""
    metrics_label: str = ""
    """The version's `model` label in the per-version Prometheus series (audit's /metrics)."""


class QualityOverviewRow(msgspec.Struct, frozen=True, kw_only=True):
    """`/v1/quality`: one version your jobs used (or you evaluated), its last day and drift. Added in 1.13."""

    owner: str
    name: str
    version: int
    jobs_24h: int
    failed_24h: int
    out_of_domain_24h: int
    drift: Drift | None
    metrics_label: str = ""
    """The version's `model` label in the per-version Prometheus series (audit's /metrics)."""


# -- accounts (1.14) ----------------------------------------------------------------------------

#: A sign-in name: an e-mail address usually, any printable name up to 254 characters.
Login = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^\s/\\]+$")]
#: Long enough that a guess costs more than a lockout window allows (NIST SP 800-63B: at least 8;
#: 12 for accounts that may change models others use).
Password = Annotated[str, msgspec.Meta(min_length=12, max_length=1024)]
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class SignInBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/sign-in`: a person's name and password; the answer sets the session cookie."""

    login: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]


class MeView(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/me`: who the request is, in which tenant, with which role."""

    tenant: str
    role: account_v1.Role
    via: str
    """`session` (a signed-in browser), `personal-key` or `tenant-key` (a system)."""
    operator: bool
    user: str | None = None
    login: str | None = None
    csrf_token: str | None = None
    """A session's: send it as `X-CSRF-Token` with every request that changes something."""
    sign_in_methods: tuple[account_v1.SignInMethod, ...] = ()


class UserBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/users`: add a person to your tenant. Without a password they sign in through
    single sign-on only (their login must be the e-mail address the identity provider gives)."""

    login: Login
    role: account_v1.Role = "viewer"
    password: Password | None = None


class RoleBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: account_v1.Role


class PasswordBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/me/password`: every other session of yours ends."""

    current: Annotated[str, msgspec.Meta(max_length=1024)]
    new: Password


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    login: str
    role: account_v1.Role
    created: str
    password: bool
    """Signs in with a password (else through single sign-on only)."""
    locked_until: str | None = None
    keys: int = 0


class PersonalKeyBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: KeyName


class PersonalKeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    created: str
    key: str | None = None
    """Only in the answer that made it: it is stored hashed and cannot be shown again."""


class AccountPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /v1/users/policy`: what members may do besides starting jobs (owners always may)."""

    members_change_aliases: bool = False
    members_change_grants: bool = False
