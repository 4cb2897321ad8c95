"""Model registry contracts, major version 1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from maskline.contracts.common_v1 import (
    DatasetPrefix,
    RecordedDatasetPrefix,
    SuppliedDatasetFile,
    SuppliedInput,
    SuppliedModelWeights,
    SuppliedSiteUpdate,
    WrittenModelFile,
    WrittenOutput,
)

REGISTER_REQUESTED = "model.v1.register.requested"
REGISTERED = "model.v1.registered"
MERGE_REQUESTED = "model.v1.merge.requested"
MERGED = "model.v1.merged"
ROUND_OPENED = "model.v1.round.opened"
UPDATE_SUBMITTED = "model.v1.round.update.submitted"
ROUND_CLOSED = "model.v1.round.closed"
FEDERATION_STOP_REQUESTED = "model.v1.federation.stop.requested"
FAILED = "model.v1.failed"
QUANTIZE_REQUESTED = "model.v1.quantize.requested"
QUANTIZE_PROGRESSED = "model.v1.quantize.progressed"
EDIT_REQUESTED = "model.v1.edit.requested"
QUANTIZED = "model.v1.quantized"
ACCESS_CHANGED = "model.v1.access.changed"
ALIAS_CHANGED = "model.v1.alias.changed"
EVALUATE_REQUESTED = "model.v1.evaluate.requested"
EVALUATE_PROGRESSED = "model.v1.evaluate.progressed"
EVALUATED = "model.v1.evaluated"
FEATURE_MAPS_REQUESTED = "model.v1.featuremaps.requested"
FEATURE_MAPS_RENDERED = "model.v1.featuremaps.rendered"
SHADOW_COMPARED = "model.v1.shadow.compared"

ModelName = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9_-]{0,63}$")]
#: A tenant as it appears in subjects and object keys (NATS ADR-6 token grammar).
Owner = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,128}$")]


class Architecture(msgspec.Struct, frozen=True, kw_only=True):
    """The Python class that rebuilds the network from its weights (needed to quantize). Added in 1.2."""

    entrypoint: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
    """`package.module:Class`; the quantize service imports only allowed prefixes."""
    kwargs: dict[str, int | float | str | bool] = {}


ModelFormat = Literal["torchscript", "onnx", "sam"]
#: The formats a registration accepts, as a refusal names them.
FORMATS: dict[str, str] = {
    "torchscript": "TorchScript (torch.jit.save)",
    "onnx": "ONNX",
    "sam": "a Segment-Anything ONNX pair (image encoder + prompt decoder)",
}

#: The prompt decoder's inputs and outputs, with their ranks, in segment-anything's own ONNX export
#: (`segment_anything.utils.onnx.SamOnnxModel`): the layout a SAM-format version must have.
SAM_DECODER_INPUT_RANKS = {
    "image_embeddings": 4,
    "point_coords": 3,
    "point_labels": 2,
    "mask_input": 4,
    "has_mask_input": 1,
    "orig_im_size": 1,
}
SAM_DECODER_OUTPUT_RANKS = {"masks": 4, "iou_predictions": 2, "low_res_masks": 4}
SAM_DECODER_INPUTS = tuple(SAM_DECODER_INPUT_RANKS)
SAM_DECODER_OUTPUTS = tuple(SAM_DECODER_OUTPUT_RANKS)


class PromptDecoder(msgspec.Struct, frozen=True, kw_only=True):
    """The second half of a SAM-format version: the prompt decoder, and the names of the image
    encoder's input and output (checked at registration to run together). Added in 1.10.

    The encoder is the version's `weights`: it takes the image brought to `input_size` as
    `preprocessing` says (resize `longest-side`, normalised, padded), and gives the embedding the
    decoder takes as `image_embeddings`."""

    weights: WrittenModelFile
    encoder_input: str
    encoder_output: str
    mask_input_size: tuple[int, int]
    """(height, width) of the decoder's `mask_input` (SAM: four times the embedding's side)."""


class ModelOutput(msgspec.Struct, frozen=True, kw_only=True):
    """Which output of the network holds the class scores, and what they are. Added in 1.5."""

    name: str | None = None
    """ONNX output name, or the key of a TorchScript model that returns a dict (torchvision's
    segmentation models return `{"out": ..., "aux": ...}`); none: the only output (or the first
    ONNX output)."""
    kind: Literal["logits", "probabilities"] = "logits"
    """`logits`: the platform applies a softmax over the classes; `probabilities`: used as they are."""


class Preprocessing(msgspec.Struct, frozen=True, kw_only=True):
    """How an image becomes the network's input, declared by the model. Added in 1.5.

    pixel (0..255, in `channels` order) x `scale`, then (x - mean) / std, per channel. Masks always
    come back at the original image's size and aspect, whichever `resize`."""

    resize: Literal["stretch", "letterbox", "tile", "longest-side"] = "stretch"
    """`stretch`: to the input size whatever the aspect (what the model was trained with if it was
    trained on squares); `letterbox`: scale to fit keeping the aspect, pad the rest with `pad`;
    `tile`: native resolution, the image cut into input-sized windows that overlap by `overlap`,
    their scores averaged where they overlap (for models trained at the scale of the pixels);
    `longest-side` (added in 1.10): the longer side scaled to the input's, the aspect kept, the rest
    padded with zeros after normalisation at the bottom and right (Segment-Anything's encoder)."""
    overlap: Annotated[float, msgspec.Meta(ge=0.0, le=0.75)] = 0.25
    """`tile`: fraction of a window shared with its neighbour."""
    scale: Annotated[float, msgspec.Meta(gt=0)] = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[
        Annotated[float, msgspec.Meta(gt=0)], Annotated[float, msgspec.Meta(gt=0)], Annotated[float, msgspec.Meta(gt=0)]
    ] = (1.0, 1.0, 1.0)
    channels: Literal["rgb", "bgr"] = "rgb"
    pad: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0
    """Pixel value (before scaling) of the letterbox's padding."""


#: Segment-Anything's own preprocessing (pixels 0..255 normalised by its mean and std, the longer
#: side to the input's, padded): what a SAM-format version must declare.
SAM_PREPROCESSING = Preprocessing(resize="longest-side", scale=1.0, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


Precision = Literal["fp32", "hybrid", "int8"]
CalibrationMethod = Literal["minmax", "entropy", "log2", "percentile"]


class LayerEdit(msgspec.Struct, frozen=True, kw_only=True):
    """Replace one quantized layer's int8 weights and/or scales. Added in 1.2."""

    layer: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.]{1,128}$")]
    weights: tuple[int, ...] | None = None
    """All int8 weight values, flattened in the layer's weight shape (row-major), each in [-128, 127]."""
    weight_scale: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """New weight scale: per-tensor, or the same for every output channel."""
    output_scale: Annotated[float, msgspec.Meta(gt=0)] | None = None
    output_zero_point: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None


class QuantizationInfo(msgspec.Struct, frozen=True, kw_only=True):
    """How a hybrid/int8 version was made, and where its reports are. Added in 1.2."""

    method: CalibrationMethod
    per_channel: bool
    keep_float: tuple[str, ...]
    dataset: RecordedDatasetPrefix
    images: int
    percentile: float
    recipe: WrittenModelFile
    """Everything needed to rebuild the int8 network from its float parent (observer qparams, edits)."""
    reports: dict[str, WrittenModelFile] = {}
    """`step`, `cross`, `calibrators`, `graph`: JSON documents."""
    edits: tuple[LayerEdit, ...] = ()


class VersionRef(msgspec.Struct, frozen=True):
    """A model version; `owner` None means the caller's own model, else the platform's public one."""

    name: ModelName
    version: Annotated[int, msgspec.Meta(ge=1)]
    owner: Owner | None = None
    """Added in 1.3: whose model (needed for a model shared with you by another tenant)."""


class ModelVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One servable version of a model: its weights (TorchScript or ONNX) plus what a caller must know."""

    name: ModelName
    version: Annotated[int, msgspec.Meta(ge=1)]
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    """(height, width) the network is fed; infer resizes to it and merge resizes back."""
    weights: WrittenModelFile
    precision: str = "fp32"
    parent: str | None = None
    """`name/version` this one was derived from (quantization, merge), if any."""
    created: datetime | None = None
    metrics: dict[str, float] = {}
    description: str = ""
    code_version: str = ""
    """Version of the maskline code that produced this version (registration, merge). Added in 1.1."""
    architecture: Architecture | None = None
    """Added in 1.2; versions without one can be served and merged but not quantized."""
    quantization: QuantizationInfo | None = None
    """Hybrid/int8 versions: method, dataset, recipe and reports. Added in 1.2."""
    owner: str = ""
    """Tenant that registered (or derived) the version; its file manager lists it. Added in 1.2."""
    lineage: tuple[VersionRef, ...] = ()
    """The versions this one was made from (merge inputs, the float parent of a quantization), with
    their owners. Added in 1.3."""
    upstream: tuple[str, ...] = ()
    """`owner/name` of every model in the lineage, transitively, that the owner of this version does
    not own: serving it needs access to each of them, and its weights cannot be downloaded. Added in 1.3."""
    job_id: str = ""
    """The job (or federated round) that made it: it registers exactly one
    version however often it runs. Added in 1.3."""
    format: ModelFormat = "torchscript"
    """Added in 1.5."""
    output: ModelOutput = ModelOutput()
    """Added in 1.5."""
    preprocessing: Preprocessing = Preprocessing()
    """Added in 1.5."""
    decoder: PromptDecoder | None = None
    """SAM format: the prompt decoder (`weights` is then the image encoder). Added in 1.10."""

    @property
    def exportable(self) -> bool:
        """Its owner may download the weights: nothing in its lineage belongs to anyone else."""
        return not self.upstream


class RegisterRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Check uploaded weights (TorchScript or ONNX: they load, and one image gives 1 x classes x H x W
    at the declared output) and register them as the next version of the tenant's model `name`.
    Added in 1.4."""

    name: ModelName
    weights: SuppliedInput
    """The uploaded file, under the tenant's inputs (claim-checked: tenant, size, sha256)."""
    labels: Annotated[tuple[str, ...], msgspec.Meta(min_length=2)]
    """Class names, background first; the model must give one score per label."""
    input_size: tuple[Annotated[int, msgspec.Meta(ge=8, le=4096)], Annotated[int, msgspec.Meta(ge=8, le=4096)]]
    """(height, width) of the model's input."""
    description: str = ""
    architecture: Architecture | None = None
    format: ModelFormat | None = None
    """Added in 1.5; none: recognised from the file (an ONNX protobuf or a TorchScript zip)."""
    output: ModelOutput = ModelOutput()
    """Added in 1.5."""
    preprocessing: Preprocessing = Preprocessing()
    """Added in 1.5."""
    decoder: SuppliedInput | None = None
    """SAM format: the prompt decoder's ONNX file (`weights` is then the image encoder's ONNX file,
    `input_size` its square input, `preprocessing` its `longest-side` resize and normalisation).
    Added in 1.10."""


class ModelRegistered(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelVersion


MergeMethod = Literal["avg", "max", "absmax", "weighted", "median", "task_arithmetic", "ties"]


class ModelMergeRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Merge registered versions of one architecture into a new version of `name`. Added in 1.1."""

    models: tuple[VersionRef, ...]
    method: MergeMethod = "avg"
    name: ModelName
    """Model the merged version is registered under (a new name, or one of the inputs' names)."""
    weights: tuple[float, ...] = ()
    """`weighted` (FedAvg): one non-negative weight per model, e.g. its sample count."""
    base: VersionRef | None = None
    """`task_arithmetic` / `ties`: the shared base model the inputs were trained from."""
    scale: float = 1.0
    density: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.2
    bn_dataset: DatasetPrefix | None = None
    """Re-estimate BatchNorm statistics on the images under this dataset prefix after merging."""
    evaluate_on: DatasetPrefix | None = None
    """A labelled dataset prefix: the merged version is evaluated on it (a follow-up evaluation job,
    `<job id>-eval`), so it carries numbers comparable with its parents'. Added in 1.6."""


class ModelMerged(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelVersion
    method: MergeMethod
    parents: tuple[VersionRef, ...]
    seconds: float
    bn_reestimated: bool = False


SiteName = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}$")]


class RoundOpened(msgspec.Struct, frozen=True, kw_only=True):
    """A federated round starts from `model`; each listed site trains on its own data and submits
    an update. The envelope's job id is the federation id for every event of it. Added in 1.1."""

    round: Annotated[int, msgspec.Meta(ge=1)]
    rounds: Annotated[int, msgspec.Meta(ge=1)]
    """Total rounds: after closing round r < rounds the merge service opens round r + 1 from the merged model."""
    model: VersionRef
    name: ModelName
    """The global model's name: each round registers its merged version under it."""
    sites: tuple[SiteName, ...]
    quorum: Annotated[int, msgspec.Meta(ge=1)]
    """At the deadline, merge if at least this many sites reported; otherwise the federation fails."""
    deadline_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    opened_at: datetime | None = None
    method: MergeMethod = "weighted"
    weights: SuppliedModelWeights | None = None
    """The global model's weights for the sites to download (so a site needs no registry access).
    Filled by the merge service for every round it opens; the opener of round 1 may give it: they
    must be `model`'s own weights, and `model` one whose weights its tenant may hand out (its own,
    derived from nothing shared, or the platform's public ones). Added in 1.3."""
    evaluate_on: DatasetPrefix | None = None
    """A labelled dataset prefix of the federation's tenant: each round's merged model is evaluated
    on it (job `<federation>-r<round>-eval`). Added in 1.6."""


class SiteUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A site's locally trained weights for one round (TorchScript in object storage)."""

    round: int
    site: SiteName
    weights: SuppliedSiteUpdate
    samples: Annotated[int, msgspec.Meta(ge=1)]
    metrics: dict[str, float] = {}


class RoundClosed(msgspec.Struct, frozen=True, kw_only=True):
    round: int
    model: VersionRef
    """The merged global model of this round."""
    sites: tuple[str, ...]
    """Sites whose updates were merged."""
    missing: tuple[str, ...] = ()
    final: bool = False


class FederationStopRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Stop a federation: the open round takes no more updates and no further round opens. Added in 1.6."""

    by: Owner
    reason: str = ""


class QuantizeRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Post-training quantization of a registered float version into a new hybrid/int8 version. Added in 1.2."""

    model: VersionRef
    dataset: DatasetPrefix
    """Object-storage prefix of the calibration images (e.g. a dataset from the augment service)."""
    method: CalibrationMethod = "entropy"
    precision: Literal["hybrid", "int8"] = "int8"
    per_channel: bool = True
    """Per-channel int8 weight scales (per-tensor when false). Upsampling layers are always per-tensor."""
    keep_float: tuple[str, ...] = ()
    """Layer names to leave in float (see the model graph for names)."""
    percentile: Annotated[float, msgspec.Meta(gt=50.0, le=100.0)] = 99.99
    max_images: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    compare_calibrators: bool = False
    """Also quantize with every method and report mIoU against FP32, latency and size."""
    name: ModelName | None = None
    """Register the result under this name (default: the parent's name, as its next version)."""
    evaluate_on: DatasetPrefix | None = None
    """A labelled dataset prefix: the quantized version is evaluated on it (a follow-up evaluation
    job, `<job id>-eval`). Added in 1.6."""


class EditRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Edit one layer of a hybrid/int8 version: a new version, with a fresh STEP report. Added in 1.2."""

    model: VersionRef
    edit: LayerEdit


class QuantizeProgressed(msgspec.Struct, frozen=True, kw_only=True):
    stage: str
    done: int
    total: int


class Quantized(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelVersion
    parent: VersionRef
    seconds: float
    summary: dict[str, float] = {}
    """Headline numbers: output SQNR (dB), pixel agreement with FP32, size ratio."""


AccessState = Literal["requested", "granted", "refused", "revoked", "withdrawn"]


class AccessChanged(msgspec.Struct, frozen=True, kw_only=True):
    """A step in sharing a model: `grantee` asked for access, the owner granted, refused or revoked
    it, or the grantee withdrew the request. Added in 1.3."""

    owner: Owner
    model: ModelName
    grantee: Owner
    state: AccessState
    by: Owner
    """The tenant that took this step (the grantee asks and withdraws; the owner decides)."""
    note: str = ""


class EvaluateRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Run a version (any precision) on a labelled dataset — images with their masks of class ids —
    through serving, and score it. Added in 1.6."""

    model: VersionRef
    dataset: DatasetPrefix
    """Object-storage prefix of the dataset (`datasets/<tenant>/<name>/`: `images/`, `masks/`)."""
    max_images: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    boundary_tolerance: Annotated[int, msgspec.Meta(ge=0, le=20)] = 2
    """Pixels a boundary may be off and still count as matched (boundary F-score)."""


class ClassScore(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    iou: float | None
    """Over the whole dataset (intersections and unions summed); none when the class is in neither
    the masks nor the predictions."""
    boundary_f1: float | None
    pixels: int
    """Pixels of this class in the masks."""


#: The features a version's outputs are watched by (`QualityReference`, the live summaries): the
#: edges of each one's bins (a value at or below the first edge falls in bin 0, one above the last
#: in the last bin: Prometheus' `le`). Fixed, so an evaluation's reference and any hour's live counts compare bin by bin.
QUALITY_BINS: dict[str, tuple[float, ...]] = {
    "mean_probability": (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995),
    "uncertain_fraction": (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "megapixels": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
}


class QualityReference(msgspec.Struct, frozen=True, kw_only=True):
    """What a version's outputs look like on data it is known to handle: for each feature of
    `QUALITY_BINS`, how many of the evaluation's images fell in each bin. Live traffic is compared
    with it (population stability index, docs/monitoring.md). Added in 1.13."""

    images: int
    histograms: dict[str, tuple[int, ...]]


class Evaluation(msgspec.Struct, frozen=True, kw_only=True):
    """A version's scores on one labelled dataset, as stored with the version. Added in 1.6."""

    model: VersionRef
    precision: str
    dataset: RecordedDatasetPrefix
    dataset_sha256: str
    """Of the sorted (image, image sha256, mask sha256) list: the same number means the same data."""
    images: int
    miou: float
    """Mean of the class IoUs that are defined."""
    pixel_accuracy: float
    boundary_f1: float
    classes: tuple[ClassScore, ...]
    latency_ms: float
    """Median per image through Triton (preprocessing and inference, this image's tiles included)."""
    latency_p90_ms: float
    boundary_tolerance: int
    code_version: str
    job_id: str
    created: datetime
    reference: QualityReference | None = None
    """The outputs' distributions on this dataset: what live traffic's drift is measured against.
    Added in 1.13."""


class Evaluated(msgspec.Struct, frozen=True, kw_only=True):
    evaluation: Evaluation
    result: WrittenOutput
    """The evaluation as a JSON document."""


class FeatureMapsRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Step one image through a quantized version and its float parent, and draw one layer's output
    channels side by side (float | int8). Added in 1.6."""

    model: VersionRef
    layer: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.]{1,128}$")]
    image: SuppliedDatasetFile
    """An image of the tenant's (a dataset image: `datasets/<tenant>/<name>/images/<file>`)."""
    channels: Annotated[int, msgspec.Meta(ge=1, le=64)] = 16
    """How many channels to draw: the ones whose float output varies most."""


class FeatureMapsRendered(msgspec.Struct, frozen=True, kw_only=True):
    model: VersionRef
    layer: str
    picture: WrittenOutput
    """PNG: per channel, the float map and the int8 map side by side, on the float map's scale."""
    shown: tuple[int, ...]
    """The channels drawn, in order."""
    sqnr_db: float
    """The layer's output, int8 against float, on this image."""
    float_range: tuple[float, float]
    int8_range: tuple[float, float]


AliasName = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_-]{0,31}$")]
#: The alias a request naming no version and no alias runs. The first version of a model (and the
#: first of each precision, as `stable-<precision>`) becomes it; after that only its owner moves it.
STABLE = "stable"


def precision_alias(alias: str, precision: str) -> str:
    """The alias a request for `alias` in one precision looks at first (`stable-int8`)."""
    return f"{alias}-{precision}"


class RollbackGuard(msgspec.Struct, frozen=True, kw_only=True):
    """When an alias rolls itself back to the version it ran before (docs/monitoring.md). Each rule
    looks at the owner's own jobs on the version the alias serves. A guard fires at most once: it
    is then disarmed (`Alias.guard_tripped`) until the owner promotes a version or sets the guard
    again, so it never flaps; and never within `cooldown_s` of the alias's last change. Added in 1.13."""

    on_drift: bool = False
    """Roll back when the served version's live window is flagged as drifted from its evaluation
    reference (`GET /v1/models/{name}/{version}/quality`)."""
    max_error_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    """Roll back when more than this share of the served version's jobs since the alias changed
    failed (over at least `min_jobs`)."""
    min_shadow_agreement: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    """Roll back when the alias's shadow (typically the version it ran before) agrees with the
    served masks less than this on average (pixel agreement, over at least `min_jobs` requests)."""
    min_jobs: Annotated[int, msgspec.Meta(ge=1)] = 30
    cooldown_s: Annotated[float, msgspec.Meta(ge=60.0)] = 3600.0
    """No automatic rollback sooner than this after the alias's last change."""


class Alias(msgspec.Struct, frozen=True, kw_only=True):
    """A named pointer to one version of a model, and how its traffic is split. Added in 1.6.

    Requests that resolve the alias run `version`, except `canary_percent` of them (chosen by job
    id, so every attempt and every TTA variant of one job runs the same version) which run
    `canary`; with `shadow`, that version also runs on each request, and its masks are compared
    with the served ones and never returned."""

    owner: Owner
    model: ModelName
    name: AliasName
    version: Annotated[int, msgspec.Meta(ge=1)]
    history: tuple[int, ...] = ()
    """The versions it pointed to before, oldest first: a rollback returns to the last one."""
    canary: Annotated[int, msgspec.Meta(ge=1)] | None = None
    canary_percent: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 0.0
    shadow: Annotated[int, msgspec.Meta(ge=1)] | None = None
    changed: datetime | None = None
    by: str = ""
    """The tenant that made the last change (`guard`: its rollback guard)."""
    guard: RollbackGuard | None = None
    """When the alias rolls itself back. Added in 1.13."""
    guard_tripped: str | None = None
    """When and why the guard rolled the alias back: it is disarmed while this is set. Added in 1.13."""


AliasAction = Literal["created", "promoted", "rolled-back", "rollout", "deleted"]


class AliasChanged(msgspec.Struct, frozen=True, kw_only=True):
    """An alias was created, promoted to another version, rolled back, had its canary or shadow
    changed, or was deleted. Added in 1.6."""

    alias: Alias
    action: AliasAction
    previous: int | None = None
    """The version it pointed to before this change (none when created)."""
    rule: str = ""
    """The promotion rule that was checked, and its numbers (empty: none was asked for)."""


class ShadowCompared(msgspec.Struct, frozen=True, kw_only=True):
    """A shadow version ran on a copy of one request: how its mask agrees with the served one. Added in 1.6."""

    owner: Owner
    model: ModelName
    alias: AliasName
    served: Annotated[int, msgspec.Meta(ge=1)]
    shadow: Annotated[int, msgspec.Meta(ge=1)]
    pixel_agreement: float
    """Share of pixels whose class is the same in both masks."""
    miou: float
    """Mean IoU of the shadow's mask against the served one, over the classes either has."""
    served_ms: float
    shadow_ms: float


#: Payload type of every subject in this family.
PAYLOADS: dict[str, type[msgspec.Struct]] = {
    REGISTERED: ModelRegistered,
    MERGE_REQUESTED: ModelMergeRequested,
    MERGED: ModelMerged,
    ROUND_OPENED: RoundOpened,
    UPDATE_SUBMITTED: SiteUpdate,
    ROUND_CLOSED: RoundClosed,
    FEDERATION_STOP_REQUESTED: FederationStopRequested,
    QUANTIZE_REQUESTED: QuantizeRequested,
    QUANTIZE_PROGRESSED: QuantizeProgressed,
    EDIT_REQUESTED: EditRequested,
    QUANTIZED: Quantized,
    ACCESS_CHANGED: AccessChanged,
    ALIAS_CHANGED: AliasChanged,
    EVALUATE_REQUESTED: EvaluateRequested,
    EVALUATE_PROGRESSED: QuantizeProgressed,
    EVALUATED: Evaluated,
    FEATURE_MAPS_REQUESTED: FeatureMapsRequested,
    FEATURE_MAPS_RENDERED: FeatureMapsRendered,
    SHADOW_COMPARED: ShadowCompared,
}
