"""The one table of the bus: every subject with its stream, payload, producers and consumers; every
key-value bucket with who reads and who writes it; every identity that may connect.

Everything else is derived from this module, so a subject cannot be forgotten in one place and
remembered in another:

- the NATS permissions of each identity (`maskline.infra.nats.permissions`),
- the streams and their subject filters (`maskline.shared.bus`),
- the durable consumer each service runs (`ConsumerSpec.for_subject`),
- the published JSON Schemas (`maskline.contracts.schema`), the AsyncAPI document
  (`maskline.contracts.asyncapi`: a channel per subject and per record subject) and the subject
  table in `contracts/README.md` (`python -m maskline.contracts.schema` writes them; a test fails
  when stale).

Wire subjects carry the tenant as their last token: an event of type `seg.v1.requested` for
tenant `acme` travels on `seg.v1.requested.acme`. That is what lets the server, not our code,
bind an outside identity to its tenant: its credential may publish `seg.v1.requested.acme` and
nothing else, and every consumer refuses an envelope whose `tenant` differs from the subject's.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from maskline.contracts import account_v1, audit_v1, dataset_v1, model_v1, seg_v1, train_v1
from maskline.contracts.common_v1 import DeadLetter, JobFailed

GATEWAY, INGEST, AUGMENT, INFER, MERGE, AUDIT = "gateway", "ingest", "augment", "infer", "merge", "audit"
#: Model work apart from the segmentation path: weight merging and federated rounds, INT8 quantization.
WEIGHTS, QUANTIZE = "weights", "quantize"
#: Tells tenants' own systems that a job ended (signed webhooks): the only service that calls out.
NOTIFY = "notify"
#: Trains and fine-tunes networks on tenants' datasets (the one stage that wants a GPU for itself).
TRAIN = "train"
#: Every maskline service, in pipeline order (the gateway first: it fronts them). Compose, the
#: embedded stack, the Dockerfile's targets, credentials and permissions all follow this list.
SERVICES: tuple[str, ...] = (GATEWAY, INGEST, AUGMENT, INFER, MERGE, WEIGHTS, QUANTIZE, TRAIN, AUDIT, NOTIFY)
#: Provisions streams and buckets and registers the bundled models (the embedded stack, a compose
#: init container, a Helm hook). Never used by a running service.
ADMIN = "admin"
#: Reads the whole audit trail and nothing else (`maskline audit verify`).
AUDITOR = "auditor"
#: A system outside the platform (a partner's pipeline, a federated site), bound to one tenant.
EXTERNAL = "external"
#: The tenant that owns the bundled, public models (read-only for every other tenant).
PLATFORM_TENANT = "maskline"

STREAMS: dict[str, str] = {
    "SEG": "seg.v1.>",
    "MODEL": "model.v1.>",
    "DATASET": "dataset.v1.>",
    "DLQ": "dlq.>",
    "AUDIT": "audit.v1.>",
    "ACCOUNT": "account.v1.>",
}


@dataclass(frozen=True)
class Consumer:
    """A durable pull consumer: `service` runs it under the name `durable`."""

    service: str
    durable: str


#: Every status a job can be in, in the order a job moves through them (failed ranks with completed:
#: both are final). The projection never moves a job back to a lower rank.
JobStatus = Literal["requested", "running", "ingested", "augmented", "inferred", "completed", "failed", "cancelled"]
JOB_STATUS_RANK: dict[JobStatus, int] = {
    "requested": 0,
    "running": 1,
    "ingested": 1,
    "augmented": 2,
    "inferred": 3,
    "completed": 4,
    "failed": 4,
    "cancelled": 4,
}
#: A job in one of these is over: nothing moves it on.
FINAL_STATUSES: tuple[JobStatus, ...] = ("completed", "failed", "cancelled")


#: What a job does, named by the command that starts it.
JobKind = Literal[
    "segmentation",
    "dataset-expansion",
    "model-merge",
    "quantization",
    "layer-edit",
    "registration",
    "evaluation",
    "feature-maps",
    "training",
    "sweep",
]


@dataclass(frozen=True)
class Subject:
    """One event type. On the wire it is `<type>.<tenant>`; a consumer filters on `<type>.*`."""

    type: str
    stream: str
    payload: builtins.type[msgspec.Struct]
    producers: tuple[str, ...]
    consumers: tuple[Consumer, ...] = ()
    external_publish: bool = False
    """Outside systems may publish it, for their own tenant only."""
    external_read: bool = False
    """Outside systems may subscribe to it (and consume it through JetStream), for their own tenant only."""
    summary: str = ""
    job_status: JobStatus | None = None
    """The status of the job this event puts it in (the job-state projection folds it); None: not a job event."""
    job_kind: JobKind | None = None
    """The kind of job this command starts (a command subject only)."""

    def wire(self, tenant: str) -> str:
        return f"{self.type}.{tenant}"

    @property
    def filter(self) -> str:
        return f"{self.type}.*"


@dataclass(frozen=True)
class StreamReader:
    """A durable consumer on a whole stream: audit's, which records every event and folds job state from it."""

    service: str
    durable: str
    stream: str

    @property
    def filter(self) -> str:
        return STREAMS[self.stream]


@dataclass(frozen=True)
class Bucket:
    """A JetStream key-value bucket and who may use it."""

    name: str
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    own_prefix: bool = False
    """Each writer may only write keys under `<writer>.` (heartbeats: no service can fake another)."""
    ttl_s: float = 0.0
    summary: str = ""
    max_bytes: int = 0
    """A cap on the bucket's storage (0: none): a bucket any tenant can fill is capped, so that it
    cannot take the file store every stream shares."""

    @property
    def stream(self) -> str:
        return f"KV_{self.name}"


def _c(service: str, durable: str | None = None) -> Consumer:
    return Consumer(service, durable or service)


def _notify(type_: str) -> Consumer:
    """notify's consumer of an event that can end a job (`model.v1.merged` → `notify-model-merged`)."""
    family, _, name = type_.split(".", 2)
    return Consumer(NOTIFY, f"notify-{family}-{name.replace('.', '-')}")


_SEG_STAGES = (INGEST, AUGMENT, INFER, MERGE)

SUBJECTS: tuple[Subject, ...] = (
    Subject(
        seg_v1.REQUESTED,
        "SEG",
        seg_v1.SegmentationRequested,
        (GATEWAY,),
        (_c(INGEST),),
        external_publish=True,
        summary="a client asks for a segmentation of an image it put in object storage",
        job_status="requested",
        job_kind="segmentation",
    ),
    Subject(
        seg_v1.INGESTED,
        "SEG",
        seg_v1.SegmentationIngested,
        (INGEST,),
        (_c(INFER),),
        summary="decoded, validated, stored",
        job_status="ingested",
    ),
    Subject(
        seg_v1.AUGMENT_REQUESTED,
        "SEG",
        seg_v1.SegmentationIngested,
        (INGEST,),
        (_c(AUGMENT),),
        summary="instead of `ingested` when the request asks for test-time augmentation (1.1)",
        job_status="ingested",
    ),
    Subject(
        seg_v1.AUGMENTED,
        "SEG",
        seg_v1.SegmentationAugmented,
        (AUGMENT,),
        (_c(INFER, "infer-variants"),),
        summary="one per TTA variant (1.1)",
        job_status="augmented",
    ),
    Subject(
        seg_v1.INFERRED,
        "SEG",
        seg_v1.SegmentationInferred,
        (INFER,),
        (_c(MERGE),),
        summary="class probabilities stored (one per variant with TTA)",
        job_status="inferred",
    ),
    Subject(
        seg_v1.COMPLETED,
        "SEG",
        seg_v1.SegmentationCompleted,
        (MERGE,),
        (_c(NOTIFY, "notify-completed"),),
        external_read=True,
        summary="mask, overlay and regions stored",
        job_status="completed",
    ),
    Subject(
        seg_v1.FAILED,
        "SEG",
        JobFailed,
        _SEG_STAGES,
        (_c(NOTIFY, "notify-failed"),),
        external_read=True,
        summary="whichever stage gave up, with the reason",
        job_status="failed",
    ),
    Subject(
        seg_v1.CANCELLED,
        "SEG",
        seg_v1.SegmentationCancelled,
        (GATEWAY,),
        (_c(NOTIFY, "notify-cancelled"),),
        external_read=True,
        summary="its tenant cancelled the job; queued work is skipped, no outputs stand (1.6)",
        job_status="cancelled",
    ),
    Subject(
        model_v1.REGISTER_REQUESTED,
        "MODEL",
        model_v1.RegisterRequested,
        (GATEWAY,),
        (_c(WEIGHTS, "weights-registrations"),),
        external_publish=True,
        summary="check uploaded weights and register them as a new version (1.4)",
        job_status="requested",
        job_kind="registration",
    ),
    Subject(
        model_v1.REGISTERED,
        "MODEL",
        model_v1.ModelRegistered,
        (WEIGHTS, QUANTIZE, TRAIN, ADMIN),
        (_c(QUANTIZE, "quantize-graphs"), _notify(model_v1.REGISTERED)),
        summary="a new version is servable; it carries the job that made it (a registration, merge, quantization, training)",
        job_status="completed",  # of a registration job only: merge and quantize jobs complete with their own event
    ),
    Subject(
        model_v1.MERGE_REQUESTED,
        "MODEL",
        model_v1.ModelMergeRequested,
        (GATEWAY,),
        (_c(WEIGHTS, "merge-models"),),  # durable names kept from when merge ran these: their state carries over
        external_publish=True,
        summary="merge registered versions into a new one (1.1)",
        job_status="requested",
        job_kind="model-merge",
    ),
    Subject(
        model_v1.MERGED,
        "MODEL",
        model_v1.ModelMerged,
        (WEIGHTS,),
        (_notify(model_v1.MERGED),),
        external_read=True,
        summary="the merged version (1.1)",
        job_status="completed",
    ),
    Subject(
        model_v1.ROUND_OPENED,
        "MODEL",
        model_v1.RoundOpened,
        (WEIGHTS, GATEWAY),
        (_c(WEIGHTS, "merge-rounds"), _c(TRAIN, "train-rounds")),  # train: sites that train through maskline (1.12)
        external_publish=True,
        external_read=True,
        summary="a federated round starts; sites train and submit (1.1)",
    ),
    Subject(
        model_v1.UPDATE_SUBMITTED,
        "MODEL",
        model_v1.SiteUpdate,
        (GATEWAY, TRAIN),  # train: a site's round trained by a train job (1.12)
        (_c(WEIGHTS, "merge-updates"),),
        external_publish=True,
        summary="a site's locally trained weights for one round (1.1)",
    ),
    Subject(
        model_v1.ROUND_CLOSED,
        "MODEL",
        model_v1.RoundClosed,
        (WEIGHTS,),
        external_read=True,
        summary="the round's merged global model (1.1)",
    ),
    Subject(
        model_v1.FEDERATION_STOP_REQUESTED,
        "MODEL",
        model_v1.FederationStopRequested,
        (GATEWAY,),
        (_c(WEIGHTS, "weights-federation-stops"),),
        external_publish=True,
        summary="stop a federation: no more updates, no next round (1.6)",
    ),
    Subject(
        model_v1.QUANTIZE_REQUESTED,
        "MODEL",
        model_v1.QuantizeRequested,
        (GATEWAY,),
        (_c(QUANTIZE, "quantize-jobs"),),
        external_publish=True,
        summary="INT8/HYBRID post-training quantization of a float version (1.2)",
        job_status="requested",
        job_kind="quantization",
    ),
    Subject(
        model_v1.EDIT_REQUESTED,
        "MODEL",
        model_v1.EditRequested,
        (GATEWAY,),
        (_c(QUANTIZE, "quantize-edits"),),
        external_publish=True,
        summary="edit one int8 layer into a new version (1.2)",
        job_status="requested",
        job_kind="layer-edit",
    ),
    Subject(
        model_v1.QUANTIZE_PROGRESSED,
        "MODEL",
        model_v1.QuantizeProgressed,
        (QUANTIZE,),
        external_read=True,
        summary="calibration and report progress (1.2)",
        job_status="running",
    ),
    Subject(
        model_v1.QUANTIZED,
        "MODEL",
        model_v1.Quantized,
        (QUANTIZE,),
        (_notify(model_v1.QUANTIZED),),
        external_read=True,
        summary="the quantized version (1.2)",
        job_status="completed",
    ),
    Subject(
        model_v1.ACCESS_CHANGED,
        "MODEL",
        model_v1.AccessChanged,
        (GATEWAY,),
        summary="access to a model requested, granted, refused or revoked (1.3)",
    ),
    Subject(
        model_v1.EVALUATE_REQUESTED,
        "MODEL",
        model_v1.EvaluateRequested,
        (GATEWAY, QUANTIZE, WEIGHTS, TRAIN),
        (_c(INFER, "infer-evaluations"),),
        external_publish=True,
        summary="score a version on a labelled dataset through serving; quantize and merge ask for it after their job (1.6)",
        job_status="requested",
        job_kind="evaluation",
    ),
    Subject(
        model_v1.EVALUATE_PROGRESSED,
        "MODEL",
        model_v1.QuantizeProgressed,
        (INFER,),
        external_read=True,
        summary="images evaluated so far (1.6)",
        job_status="running",
    ),
    Subject(
        model_v1.EVALUATED,
        "MODEL",
        model_v1.Evaluated,
        (INFER,),
        (_notify(model_v1.EVALUATED),),
        external_read=True,
        summary="per-class IoU, mIoU, pixel accuracy, boundary F-score, latency (1.6)",
        job_status="completed",
    ),
    Subject(
        model_v1.FEATURE_MAPS_REQUESTED,
        "MODEL",
        model_v1.FeatureMapsRequested,
        (GATEWAY,),
        (_c(QUANTIZE, "quantize-featuremaps"),),
        external_publish=True,
        summary="step one image through an int8 version and its float parent; draw one layer's channels (1.6)",
        job_status="requested",
        job_kind="feature-maps",
    ),
    Subject(
        model_v1.FEATURE_MAPS_RENDERED,
        "MODEL",
        model_v1.FeatureMapsRendered,
        (QUANTIZE,),
        (_notify(model_v1.FEATURE_MAPS_RENDERED),),
        external_read=True,
        summary="float and int8 feature maps of one layer, as a picture (1.6)",
        job_status="completed",
    ),
    Subject(
        model_v1.ALIAS_CHANGED,
        "MODEL",
        model_v1.AliasChanged,
        (GATEWAY, WEIGHTS),  # weights: a guard's automatic rollback (1.13)
        external_read=True,
        summary="an alias created, promoted, rolled back (by its owner or guard), its rollout or guard set, or deleted (1.6)",
    ),
    Subject(
        model_v1.SHADOW_COMPARED,
        "MODEL",
        model_v1.ShadowCompared,
        (INFER,),
        external_read=True,
        summary="a shadow version ran on a copy of a request; its mask compared with the served one (1.6)",
    ),
    Subject(
        train_v1.TRAIN_REQUESTED,
        "MODEL",
        train_v1.TrainRequested,
        (GATEWAY, TRAIN),  # the train service: a sweep's trials
        (_c(TRAIN, "train-jobs"),),
        external_publish=True,
        summary="train a network from scratch or fine-tune a version on a labelled dataset (1.11)",
        job_status="requested",
        job_kind="training",
    ),
    Subject(
        train_v1.TRAIN_PROGRESSED,
        "MODEL",
        train_v1.TrainProgressed,
        (TRAIN,),
        external_read=True,
        summary="loss, learning rate and validation mIoU at a step (1.11)",
        job_status="running",
    ),
    Subject(
        train_v1.TRAINED,
        "MODEL",
        train_v1.Trained,
        (TRAIN,),
        (_notify(train_v1.TRAINED), _c(TRAIN, "train-mlflow")),  # train: the run, to MLflow when configured (1.12)
        external_read=True,
        summary="the trained version and its run: parent, data hash, hyper-parameters, curves (1.11)",
        job_status="completed",
    ),
    Subject(
        train_v1.TRAIN_CANCELLED,
        "MODEL",
        train_v1.TrainCancelled,
        (GATEWAY, TRAIN),
        (_notify(train_v1.TRAIN_CANCELLED),),
        external_read=True,
        summary="its tenant (or its sweep's pruner) cancelled the training; it stops at its next checkpoint (1.11)",
        job_status="cancelled",
    ),
    Subject(
        train_v1.SWEEP_REQUESTED,
        "MODEL",
        train_v1.SweepRequested,
        (GATEWAY,),
        (_c(TRAIN, "train-sweeps"),),
        external_publish=True,
        summary="trials of a training over a search space, sampled and pruned by Optuna (1.11)",
        job_status="requested",
        job_kind="sweep",
    ),
    Subject(
        train_v1.SWEEP_PROGRESSED,
        "MODEL",
        train_v1.SweepProgressed,
        (TRAIN,),
        external_read=True,
        summary="a trial of a sweep ended: complete, pruned or failed (1.11)",
        job_status="running",
    ),
    Subject(
        train_v1.SWEPT,
        "MODEL",
        train_v1.Swept,
        (TRAIN,),
        (_notify(train_v1.SWEPT),),
        external_read=True,
        summary="every trial of a sweep and the best one (1.11)",
        job_status="completed",
    ),
    Subject(
        model_v1.FAILED,
        "MODEL",
        JobFailed,
        (WEIGHTS, QUANTIZE, INFER, TRAIN),
        (_notify(model_v1.FAILED),),
        external_read=True,
        summary="a model job (merge, quantize, edit, round) gave up",
        job_status="failed",
    ),
    Subject(
        dataset_v1.EXPAND_REQUESTED,
        "DATASET",
        dataset_v1.DatasetExpandRequested,
        (GATEWAY,),
        (_c(AUGMENT, "augment-datasets"),),
        external_publish=True,
        summary="expand a dataset with the five variants (1.1)",
        job_status="requested",
        job_kind="dataset-expansion",
    ),
    Subject(
        dataset_v1.EXPAND_PROGRESSED,
        "DATASET",
        dataset_v1.DatasetExpandProgressed,
        (AUGMENT,),
        external_read=True,
        summary="images done so far (1.1)",
        job_status="running",
    ),
    Subject(
        dataset_v1.EXPANDED,
        "DATASET",
        dataset_v1.DatasetExpanded,
        (AUGMENT,),
        (_notify(dataset_v1.EXPANDED),),
        external_read=True,
        summary="every variant written, manifest stored (1.1)",
        job_status="completed",
    ),
    Subject(
        dataset_v1.FAILED,
        "DATASET",
        JobFailed,
        (AUGMENT,),
        (_notify(dataset_v1.FAILED),),
        external_read=True,
        summary="a dataset job gave up",
        job_status="failed",
    ),
    Subject(
        account_v1.CHANGED,
        "ACCOUNT",
        account_v1.AccountChanged,
        (GATEWAY,),
        external_read=True,
        summary="a sign-in (or a failed one), lockout, sign-out, personal key or role change of a person (1.14)",
    ),
)


def commands_consumed_by(service: str) -> tuple[Subject, ...]:
    """The commands (subjects that start a job) `service` takes off the bus: it admits them."""
    return tuple(s for s in SUBJECTS if s.job_kind is not None and any(c.service == service for c in s.consumers))


def job_ends(stream: str) -> tuple[Subject, ...]:
    """The subjects of `stream` that can end a job (completed, failed, cancelled)."""
    return tuple(s for s in SUBJECTS if s.stream == stream and s.job_status in FINAL_STATUSES)


#: Command type → the kind of job it starts; job kind → its family (the first token of its subjects).
JOB_KIND_OF: dict[str, JobKind] = {s.type: s.job_kind for s in SUBJECTS if s.job_kind is not None}
JOB_FAMILY: dict[JobKind, str] = {s.job_kind: s.type.split(".", 1)[0] for s in SUBJECTS if s.job_kind is not None}

#: Durable consumers over whole streams: the audit trail, which also projects job state.
STREAM_READERS: tuple[StreamReader, ...] = (
    StreamReader(AUDIT, "audit-seg", "SEG"),
    StreamReader(AUDIT, "audit-model", "MODEL"),
    StreamReader(AUDIT, "audit-dataset", "DATASET"),
    StreamReader(AUDIT, "audit-dlq", "DLQ"),
    StreamReader(AUDIT, "audit-account", "ACCOUNT"),
)

BUCKETS: tuple[Bucket, ...] = (
    Bucket(
        "jobs",
        (GATEWAY, AUDIT),
        # notify: which kind of job an event ends; the services that take commands: whether a command
        # names a job that exists already (finished, or started by another request)
        (GATEWAY, AUDIT, NOTIFY, INGEST, AUGMENT, INFER, WEIGHTS, QUANTIZE, TRAIN),
        ttl_s=30 * 24 * 3600.0,
        summary="job state, projected from the events by audit (the gateway records a request it accepted)",
    ),
    Bucket(
        "models",
        (GATEWAY, WEIGHTS, QUANTIZE, TRAIN, ADMIN),
        (GATEWAY, INFER, WEIGHTS, QUANTIZE, TRAIN, ADMIN),
        summary="model versions, per owner; the latest pointer and aliases (stable, canary, ...)",
    ),
    Bucket("grants", (GATEWAY,), (GATEWAY, INFER, WEIGHTS, QUANTIZE, TRAIN), summary="who may use whose model"),
    Bucket(
        "shadows",
        (INFER,),
        (GATEWAY, WEIGHTS),  # weights: an alias guard's shadow rule
        summary="per alias and shadow version: how the shadow's masks agree with the served ones (running sums)",
    ),
    Bucket(
        "idempotency",
        (GATEWAY,),
        (GATEWAY,),
        ttl_s=24 * 3600.0,
        summary="Idempotency-Key → job, request fingerprint and the first answer",
        max_bytes=512 * 1024 * 1024,
    ),
    Bucket("tta", (MERGE,), (MERGE,), ttl_s=24 * 3600.0, summary="TTA variants collected per job"),
    Bucket(
        "fences",
        (GATEWAY, MERGE, WEIGHTS, QUANTIZE, TRAIN),
        (GATEWAY, MERGE, WEIGHTS, QUANTIZE, TRAIN),
        ttl_s=30 * 24 * 3600.0,
        summary="which attempt's result stands for a job, and whether its final event was published",
    ),
    Bucket(
        "leases",
        (GATEWAY,),
        (GATEWAY,),
        ttl_s=15.0,
        summary="who holds a lease (the gateway replica that exports the platform's metrics); renewed, else expires",
    ),
    Bucket(
        "rounds",
        (WEIGHTS,),
        (WEIGHTS, GATEWAY, TRAIN),
        summary="federated rounds in progress (the gateway lists them; train checks a site's round)",
    ),
    Bucket(
        "webhooks",
        (GATEWAY,),
        (GATEWAY, NOTIFY),
        summary="where to tell a tenant that its jobs ended (`<tenant>`) and the signing secret",
    ),
    Bucket(
        "job-webhooks",
        (GATEWAY,),
        (GATEWAY, NOTIFY),
        ttl_s=8 * 24 * 3600.0,
        summary="one job's own webhook (`<tenant>.<job>`), for as long as a job may run",
    ),
    Bucket(
        "cancels",
        (GATEWAY, TRAIN),
        (INGEST, AUGMENT, INFER, MERGE, TRAIN),
        ttl_s=8 * 24 * 3600.0,
        summary="segmentations and trainings their tenant cancelled (stages watch it and skip their queued work)",
    ),
    Bucket(
        "quality",
        (AUDIT,),
        (AUDIT, GATEWAY, WEIGHTS),  # weights: an alias guard's drift and error-rate rules
        ttl_s=30 * 24 * 3600.0,
        summary="per tenant and model version: hourly summaries of finished jobs (a key per day) and the drift reference",
        max_bytes=512 * 1024 * 1024,
    ),
    Bucket(
        "accounts",
        (GATEWAY,),
        (GATEWAY,),
        summary="people per tenant (role, password hash, lockout, personal keys' digests), sign-in names and key digests",
        max_bytes=64 * 1024 * 1024,
    ),
    Bucket(
        "sessions",
        (GATEWAY,),
        (GATEWAY,),
        ttl_s=12 * 3600.0,
        summary="signed-in browsers, by the sha256 of their cookie's token (a session ends 12 hours after sign-in)",
        max_bytes=64 * 1024 * 1024,
    ),
    Bucket(
        "sign-ins",
        (GATEWAY,),
        (GATEWAY,),
        ttl_s=600.0,
        summary="single sign-ons under way: state, nonce and PKCE verifier by the sha256 of the browser's handle (10 minutes)",
        max_bytes=64 * 1024 * 1024,
    ),
    Bucket(
        "fleet",
        SERVICES,
        (GATEWAY,),
        own_prefix=True,
        ttl_s=3600.0,
        summary="heartbeats: each instance's status (a service writes only its own keys)",
    ),
)

#: Records of the audit trail, one subject per job, and signed checkpoints. Written by audit only.
AUDIT_SUBJECTS = (audit_v1.RECORD_SUBJECT_PREFIX + "*.*", audit_v1.CHECKPOINT_SUBJECT)

#: Streams whose whole content a service reads with short-lived consumers (listings, trails).
READS: dict[str, tuple[str, ...]] = {
    GATEWAY: ("DLQ", "AUDIT"),
    AUDIT: ("AUDIT",),
    AUDITOR: ("AUDIT",),
}

#: The stage consumers whose queues make up the pipeline's backlog (admission control), and who reads it.
BACKLOG_STAGES: tuple[tuple[str, str], ...] = tuple(
    (s.stream, c.durable)
    for s in SUBJECTS
    if s.stream == "SEG"
    for c in s.consumers
    if c.service in (INGEST, AUGMENT, INFER, MERGE)
)
WATCH_BACKLOG: tuple[str, ...] = (GATEWAY, INGEST)

#: Other services' status endpoints are asked by these (the fleet view).
ASKS_FLEET: tuple[str, ...] = (GATEWAY,)


@dataclass(frozen=True)
class Identity:
    """Who connects to NATS: a service, the provisioner, the auditor, or an outside system."""

    name: str
    role: str
    tenant: str | None = None
    """Outside systems only: the one tenant its subjects are bound to."""
    extra: dict[str, str] = field(default_factory=dict)


#: Consumers an outside identity may run on the streams it reads: named `<identity>-<n>`, n = 1..this.
#: NATS permissions match whole subject tokens only, so a name prefix cannot be a wildcard: the
#: names are listed, and no other identity (nor any platform durable) can hold one of them.
EXTERNAL_CONSUMER_SLOTS = 8


def external_consumers(identity: str) -> tuple[str, ...]:
    """The consumer names an outside identity may create, read, pull from and delete."""
    return tuple(f"{identity}-{n}" for n in range(1, EXTERNAL_CONSUMER_SLOTS + 1))


def subject(type_: str) -> Subject:
    for s in SUBJECTS:
        if s.type == type_:
            return s
    raise KeyError(f"{type_!r} is not in the subject table (contracts/subjects.py)")


def consumer_of(type_: str, service: str) -> Consumer:
    """The durable that `service` runs on `type_` (raises if the table does not say it consumes it)."""
    for c in subject(type_).consumers:
        if c.service == service:
            return c
    raise KeyError(f"the subject table does not list {service} as a consumer of {type_}")


def bucket(name: str) -> Bucket:
    return next(b for b in BUCKETS if b.name == name)


def produced_by(service: str) -> Iterator[Subject]:
    return (s for s in SUBJECTS if service in s.producers)


def durables_of(service: str) -> list[tuple[str, str, str]]:
    """(stream, durable, filter) of every durable consumer `service` runs."""
    found = [(s.stream, c.durable, s.filter) for s in SUBJECTS for c in s.consumers if c.service == service]
    found += [(r.stream, r.durable, r.filter) for r in STREAM_READERS if r.service == service]
    return found


def all_durables() -> list[tuple[str, str, str]]:
    """(service, stream, durable) of every durable consumer in the table."""
    found = [(c.service, s.stream, c.durable) for s in SUBJECTS for c in s.consumers]
    return found + [(r.service, r.stream, r.durable) for r in STREAM_READERS]


def payloads() -> dict[str, type[msgspec.Struct]]:
    """Event type → payload type, for every subject in the table."""
    return {s.type: s.payload for s in SUBJECTS}


@dataclass(frozen=True)
class Record:
    """A subject whose messages are records, not enveloped events: dead letters and the audit trail."""

    name: str
    """Its message and schema name (`contracts/schemas/<name>.json`)."""
    address: str
    """The subject, a `{parameter}` for each token that varies."""
    stream: str
    payload: builtins.type[msgspec.Struct]
    producers: tuple[str, ...]
    msg_id: str
    """How its `Nats-Msg-Id` is made."""
    summary: str = ""


#: Every subject that carries a record: each service dead-letters what its own durables give up
#: on (`dlq.<durable>`; `dlq.audit`: what audit could not record), and only audit appends to the trail.
RECORDS: tuple[Record, ...] = (
    Record(
        "dlq.record",
        "dlq.{durable}",
        "DLQ",
        DeadLetter,
        tuple(s for s in SERVICES if durables_of(s)),
        msg_id="dlq:<durable>:<stream>:<stream seq>",
        summary="a message a consumer gave up on, kept to inspect and re-drive",
    ),
    Record(
        "audit.v1.record",
        audit_v1.RECORD_SUBJECT_PREFIX + "{tenant}.{job}",
        "AUDIT",
        audit_v1.AuditRecord,
        (AUDIT,),
        msg_id="audit:<stream>:<stream seq> of the event recorded",
        summary="one event of the job as it travelled, hash-chained to the record before it and signed",
    ),
    Record(
        audit_v1.CHECKPOINT_SUBJECT,
        audit_v1.CHECKPOINT_SUBJECT,
        "AUDIT",
        audit_v1.Checkpoint,
        (AUDIT,),
        msg_id="audit:checkpoint:<chain seq>",
        summary="a signed statement of the audit chain's head",
    ),
)
