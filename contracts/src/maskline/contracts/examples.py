"""One example message for every subject, built from the contracts themselves.

Each is a real instance of its Struct, encoded by msgspec exactly as a service would put it on the
bus. They are published in the AsyncAPI document (each Message Object's `examples`) and a test
validates every one against its published schema with a draft-07 validator that is not msgspec:
what the schemas say is held to what the services send. A subject without an example here stops
`python -m maskline.contracts.schema`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from maskline.contracts import account_v1, audit_v1, dataset_v1, model_v1, seg_v1, train_v1
from maskline.contracts import subjects as table
from maskline.contracts.common_v1 import DeadLetter, JobFailed, ModelRef, ObjectRef, Variant
from maskline.contracts.envelope import Envelope, event_id

TENANT = "acme"
JOB = "5f0c3a9e2b7d4c1a8e6f0b3d2a1c9e7f"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _ref(key: str, size: int, fill: str, content_type: str = "application/octet-stream") -> ObjectRef:
    return ObjectRef(key=key, size=size, sha256=fill * 64, content_type=content_type)


UPLOAD = _ref(f"inputs/{TENANT}/uploads/{'a' * 64}", 48_213, "a", "image/jpeg")
IMAGE = _ref(f"inputs/{TENANT}/{JOB}/image.png", 131_072, "b", "image/png")
WORKING = _ref(f"inputs/{TENANT}/{JOB}/working.npy", 786_560, "c")
PROBS = _ref(f"outputs/{TENANT}/{JOB}/probs.npy", 393_344, "d")
WEIGHTS = _ref(f"models/{TENANT}/roads/3/model-{'e' * 16}.pt", 7_870_144, "e")
OPTIONS = seg_v1.SegmentationOptions(model="roads", owner=TENANT, alias="stable")
SERVED = ModelRef(name="roads", version=3, owner=TENANT, alias="stable")
ROADS_3 = model_v1.VersionRef("roads", 3, TENANT)
DATASET = f"datasets/{TENANT}/streets/"
VERSION = model_v1.ModelVersion(
    name="roads",
    version=3,
    labels=("background", "road", "sidewalk"),
    input_size=(256, 256),
    weights=WEIGHTS,
    created=AT,
    owner=TENANT,
    job_id=JOB,
    code_version="1.8.0",
)
INT8 = msgspec.structs.replace(
    VERSION,
    version=4,
    precision="int8",
    parent="roads/3",
    lineage=(ROADS_3,),
    weights=_ref(f"models/{TENANT}/roads/4/model-{'f' * 16}.pt", 2_104_320, "f"),
    quantization=model_v1.QuantizationInfo(
        method="entropy",
        per_channel=True,
        keep_float=("head.conv",),
        dataset=DATASET,
        images=64,
        percentile=99.99,
        recipe=_ref(f"models/{TENANT}/roads/quantize/{JOB}/recipe.json", 20_480, "1", "application/json"),
    ),
)
ROTATE = Variant(name="rotate", angle=15.0)
TRAIN = train_v1.TrainRequested(
    name="roads",
    dataset=DATASET,
    base=ROADS_3,
    hyperparameters=train_v1.Hyperparameters(learning_rate=3e-4, steps=400, batch=16, seed=7, freeze=("enc1.",)),
    evaluate_on=f"datasets/{TENANT}/streets-held-out/",
    experiment="roads-finetune",
)
TRIAL_0 = train_v1.TrialResult(
    number=0,
    run=f"{JOB}-t0",
    params={"learning_rate": 0.0031, "optimiser": "adamw"},
    state="complete",
    value=0.8731,
    step=400,
    model=model_v1.VersionRef("roads", 6, TENANT),
)
TRIAL_2 = train_v1.TrialResult(
    number=2, run=f"{JOB}-t2", params={"learning_rate": 0.00012, "optimiser": "sgd"}, state="pruned", value=0.4120, step=150
)
POINT = train_v1.CurvePoint(step=400, loss=0.1832, learning_rate=0.0, validation_miou=0.8731)
TRAINED_5 = msgspec.structs.replace(
    VERSION,
    version=5,
    parent="roads/3",
    lineage=(ROADS_3,),
    weights=_ref(f"models/{TENANT}/roads/5/model-{'9' * 16}.pt", 7_870_144, "9"),
    description=f"fine-tuned from roads/3 on {DATASET} (run {JOB})",
)

#: Subject → the payload of its example.
PAYLOADS: dict[str, msgspec.Struct] = {
    seg_v1.REQUESTED: seg_v1.SegmentationRequested(image=UPLOAD, options=OPTIONS, filename="street.jpg"),
    seg_v1.INGESTED: seg_v1.SegmentationIngested(
        image=IMAGE,
        width=1024,
        height=768,
        original_format="JPEG",
        options=OPTIONS,
        timings_ms={"ingest": 41.5},
        working=WORKING,
        working_width=512,
        working_height=384,
    ),
    seg_v1.AUGMENT_REQUESTED: seg_v1.SegmentationIngested(
        image=IMAGE,
        width=1024,
        height=768,
        original_format="JPEG",
        options=msgspec.structs.replace(OPTIONS, tta=seg_v1.TtaOptions()),
        working=WORKING,
        working_width=512,
        working_height=384,
    ),
    seg_v1.AUGMENTED: seg_v1.SegmentationAugmented(
        image=_ref(f"inputs/{TENANT}/{JOB}/variants/1-rotate.npy", 589_952, "2"),
        width=512,
        height=384,
        original=IMAGE,
        original_width=1024,
        original_height=768,
        variant=ROTATE,
        index=1,
        count=5,
        options=msgspec.structs.replace(OPTIONS, tta=seg_v1.TtaOptions()),
        working_width=512,
        working_height=384,
    ),
    seg_v1.INFERRED: seg_v1.SegmentationInferred(
        image=IMAGE,
        width=1024,
        height=768,
        prediction=PROBS,
        model=SERVED,
        labels=VERSION.labels,
        options=OPTIONS,
        timings_ms={"ingest": 41.5, "infer": 18.2},
        working_width=512,
        working_height=384,
    ),
    seg_v1.COMPLETED: seg_v1.SegmentationCompleted(
        artifacts={
            "mask": _ref(f"outputs/{TENANT}/{JOB}/mask.png", 9_811, "3", "image/png"),
            "overlay": _ref(f"outputs/{TENANT}/{JOB}/overlay.png", 402_115, "4", "image/png"),
            "regions": _ref(f"outputs/{TENANT}/{JOB}/regions.json", 2_950, "5", "application/json"),
        },
        model=SERVED,
        width=1024,
        height=768,
        regions=7,
        timings_ms={"ingest": 41.5, "infer": 18.2, "merge": 12.9},
        confidence=seg_v1.Confidence(mean_probability=0.982, uncertain_fraction=0.031),
    ),
    seg_v1.FAILED: JobFailed(
        stage="ingest", code="invalid_image", reason="not an image: cannot identify image file", subject=seg_v1.REQUESTED
    ),
    seg_v1.CANCELLED: seg_v1.SegmentationCancelled(by=TENANT, reason="uploaded the wrong picture"),
    model_v1.REGISTER_REQUESTED: model_v1.RegisterRequested(
        name="roads",
        weights=_ref(f"inputs/{TENANT}/model-uploads/{'6' * 64}", 7_870_144, "6"),
        labels=VERSION.labels,
        input_size=(256, 256),
        description="streets, 3 classes",
        format="torchscript",
        preprocessing=model_v1.Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=1.0 / 255.0),
    ),
    model_v1.REGISTERED: model_v1.ModelRegistered(model=VERSION),
    model_v1.MERGE_REQUESTED: model_v1.ModelMergeRequested(
        models=(ROADS_3, model_v1.VersionRef("roads-night", 1, TENANT)), method="weighted", name="roads", weights=(0.7, 0.3)
    ),
    model_v1.MERGED: model_v1.ModelMerged(
        model=msgspec.structs.replace(VERSION, version=5, parent="roads/3"),
        method="weighted",
        parents=(ROADS_3, model_v1.VersionRef("roads-night", 1, TENANT)),
        seconds=3.4,
    ),
    model_v1.ROUND_OPENED: model_v1.RoundOpened(
        round=1, rounds=3, model=ROADS_3, name="roads-fed", sites=("depot-north", "depot-south"), quorum=2, opened_at=AT
    ),
    model_v1.UPDATE_SUBMITTED: model_v1.SiteUpdate(
        round=1,
        site="depot-north",
        weights=_ref(f"federations/{TENANT}/{JOB}/1/depot-north.pt", 7_870_144, "7"),
        samples=412,
        metrics={"loss": 0.21},
    ),
    model_v1.ROUND_CLOSED: model_v1.RoundClosed(
        round=1, model=model_v1.VersionRef("roads-fed", 1, TENANT), sites=("depot-north", "depot-south")
    ),
    model_v1.FEDERATION_STOP_REQUESTED: model_v1.FederationStopRequested(by=TENANT, reason="enough rounds"),
    model_v1.QUANTIZE_REQUESTED: model_v1.QuantizeRequested(model=ROADS_3, dataset=DATASET, keep_float=("head.conv",)),
    model_v1.EDIT_REQUESTED: model_v1.EditRequested(
        model=model_v1.VersionRef("roads", 4, TENANT), edit=model_v1.LayerEdit(layer="encoder.conv1", weight_scale=0.0123)
    ),
    model_v1.QUANTIZE_PROGRESSED: model_v1.QuantizeProgressed(stage="calibrating", done=32, total=64),
    model_v1.QUANTIZED: model_v1.Quantized(model=INT8, parent=ROADS_3, seconds=48.7, summary={"sqnr_db": 31.2}),
    model_v1.ACCESS_CHANGED: model_v1.AccessChanged(owner=TENANT, model="roads", grantee="globex", state="granted", by=TENANT),
    model_v1.EVALUATE_REQUESTED: model_v1.EvaluateRequested(model=ROADS_3, dataset=DATASET, max_images=200),
    model_v1.EVALUATE_PROGRESSED: model_v1.QuantizeProgressed(stage="evaluating", done=120, total=200),
    model_v1.EVALUATED: model_v1.Evaluated(
        evaluation=model_v1.Evaluation(
            model=ROADS_3,
            precision="fp32",
            dataset=DATASET,
            dataset_sha256="8" * 64,
            images=200,
            miou=0.874,
            pixel_accuracy=0.962,
            boundary_f1=0.801,
            classes=(
                model_v1.ClassScore(label="background", iou=0.951, boundary_f1=0.842, pixels=18_200_311),
                model_v1.ClassScore(label="road", iou=0.903, boundary_f1=0.811, pixels=9_020_114),
                model_v1.ClassScore(label="sidewalk", iou=0.768, boundary_f1=None, pixels=1_211_002),
            ),
            latency_ms=14.1,
            latency_p90_ms=19.8,
            boundary_tolerance=2,
            code_version="1.8.0",
            job_id=JOB,
            created=AT,
        ),
        result=_ref(f"outputs/{TENANT}/evaluations/{TENANT}/roads/3/{'8' * 16}.json", 1_804, "9", "application/json"),
    ),
    model_v1.FEATURE_MAPS_REQUESTED: model_v1.FeatureMapsRequested(
        model=model_v1.VersionRef("roads", 4, TENANT),
        layer="encoder.conv1",
        image=_ref(f"{DATASET}images/0001.png", 131_072, "0", "image/png"),
        channels=8,
    ),
    model_v1.FEATURE_MAPS_RENDERED: model_v1.FeatureMapsRendered(
        model=model_v1.VersionRef("roads", 4, TENANT),
        layer="encoder.conv1",
        picture=_ref(f"outputs/{TENANT}/{JOB}/featuremaps.png", 210_400, "a", "image/png"),
        shown=(3, 0, 7, 5, 1, 6, 2, 4),
        sqnr_db=29.4,
        float_range=(-2.31, 5.02),
        int8_range=(-2.29, 5.0),
    ),
    model_v1.ALIAS_CHANGED: model_v1.AliasChanged(
        alias=model_v1.Alias(owner=TENANT, model="roads", name="stable", version=4, history=(3,), changed=AT, by=TENANT),
        action="promoted",
        previous=3,
    ),
    account_v1.CHANGED: account_v1.AccountChanged(
        action="role-changed",
        user="u-3f9a0c1d2e4b5a69",
        login="ana@example.com",
        by="u-0a1b2c3d4e5f6071",
        role="member",
        previous_role="viewer",
        client="203.0.113.7",
    ),
    model_v1.SHADOW_COMPARED: model_v1.ShadowCompared(
        owner=TENANT,
        model="roads",
        alias="stable",
        served=3,
        shadow=4,
        pixel_agreement=0.991,
        miou=0.952,
        served_ms=18.2,
        shadow_ms=9.7,
    ),
    model_v1.FAILED: JobFailed(
        stage="quantize-jobs", code="model_not_found", reason="roads/9 is not registered", subject=model_v1.QUANTIZE_REQUESTED
    ),
    dataset_v1.EXPAND_REQUESTED: dataset_v1.DatasetExpandRequested(source=DATASET, target=f"datasets/{TENANT}/streets-tta/"),
    dataset_v1.EXPAND_PROGRESSED: dataset_v1.DatasetExpandProgressed(done=40, total=120, written=200, skipped=0),
    dataset_v1.EXPANDED: dataset_v1.DatasetExpanded(
        manifest=_ref(f"datasets/{TENANT}/streets-tta/manifest.json", 61_220, "b", "application/json"),
        images=120,
        outputs=600,
        written=600,
        skipped=0,
        variants=(
            Variant(name="original"),
            ROTATE,
            Variant(name="blur", sigma=1.0),
            Variant(name="flip"),
            Variant(name="flop"),
        ),
    ),
    train_v1.TRAIN_REQUESTED: TRAIN,
    train_v1.TRAIN_PROGRESSED: train_v1.TrainProgressed(step=400, steps=400, point=POINT),
    train_v1.TRAINED: train_v1.Trained(
        run=train_v1.TrainingRun(
            run=JOB,
            tenant=TENANT,
            name="roads",
            model=model_v1.VersionRef("roads", 5, TENANT),
            base=ROADS_3,
            architecture=None,
            dataset=DATASET,
            dataset_sha256="7" * 64,
            images=160,
            validation_images=32,
            hyperparameters=TRAIN.hyperparameters,
            evaluate_on=TRAIN.evaluate_on,
            experiment=TRAIN.experiment,
            curve=(train_v1.CurvePoint(step=25, loss=0.6120, learning_rate=3e-4), POINT),
            train_loss=0.1911,
            validation_miou=0.8731,
            code_version="1.11.0",
            torch="2.13.0+cpu",
            device="cpu",
            seconds=212.4,
            created=AT,
            request=TRAIN,
        ),
        model=TRAINED_5,
        record=_ref(f"models/{TENANT}/_runs/{JOB}/run.json", 6_144, "8", "application/json"),
    ),
    train_v1.TRAIN_CANCELLED: train_v1.TrainCancelled(by=TENANT),
    train_v1.SWEEP_REQUESTED: train_v1.SweepRequested(
        training=TRAIN,
        space={
            "learning_rate": train_v1.SearchDimension(low=1e-4, high=1e-2, log=True),
            "optimiser": train_v1.SearchDimension(choices=("adamw", "sgd")),
        },
        trials=12,
        parallel=2,
    ),
    train_v1.SWEEP_PROGRESSED: train_v1.SweepProgressed(trial=TRIAL_2, done=3, trials=12),
    train_v1.SWEPT: train_v1.Swept(experiment="roads-finetune", trials=(TRIAL_0, TRIAL_2), best=TRIAL_0),
    dataset_v1.FAILED: JobFailed(
        stage="augment-datasets",
        code="dataset_empty",
        reason="no images under the source prefix",
        subject=dataset_v1.EXPAND_REQUESTED,
    ),
}


def envelope(type_: str) -> Envelope[Any]:
    """The example event of subject `type_`, as its first producer would publish it."""
    try:
        data = PAYLOADS[type_]
    except KeyError:
        raise KeyError(f"no example message for {type_!r}: add one to maskline.contracts.examples") from None
    return Envelope(
        id=event_id(JOB, type_),
        type=type_,
        time=AT,
        source=table.subject(type_).producers[0],
        tenant=TENANT,
        job_id=JOB,
        trace_id=TRACE,
        data=data,
    )


_REQUESTED = envelope(seg_v1.REQUESTED)
_UNSIGNED = audit_v1.AuditRecord(
    seq=1042,
    subject=f"{seg_v1.REQUESTED}.{TENANT}",
    event_id=_REQUESTED.id,
    type=_REQUESTED.type,
    job_id=JOB,
    tenant=TENANT,
    source=_REQUESTED.source,
    event_time=AT,
    recorded=AT,
    stream="SEG",
    stream_seq=5120,
    payload_sha256=hashlib.sha256(msgspec.json.encode(_REQUESTED)).hexdigest(),
    event=msgspec.Raw(msgspec.json.encode(_REQUESTED)),
    prev_hash="d" * 64,
    key_id="0f1e2d3c4b5a6978",
)
_RECORDED = msgspec.structs.replace(_UNSIGNED, hash=audit_v1.chain_hash(_UNSIGNED), signature="ab" * 64)

_LETTER = DeadLetter(
    consumer="ingest",
    stream="SEG",
    stream_seq=5120,
    subject=f"{seg_v1.REQUESTED}.{TENANT}",
    deliveries=5,
    code="max_deliveries",
    reason="object store unavailable",
    data=msgspec.json.encode(_REQUESTED),
    headers={"Nats-Msg-Id": f"{TENANT}:{_REQUESTED.id}"},
)

#: Record subject (`table.RECORDS`) → its example.
RECORDS: dict[str, msgspec.Struct] = {
    "dlq.record": _LETTER,
    "audit.v1.record": _RECORDED,
    audit_v1.CHECKPOINT_SUBJECT: audit_v1.Checkpoint(
        seq=1042, stream_seq=2210, hash=_RECORDED.hash, time=AT, key_id="0f1e2d3c4b5a6978", signature="cd" * 64
    ),
}


def headers(name: str) -> dict[str, str]:
    """The headers the example message named `name` is published with (its `Nats-Msg-Id`)."""
    records: dict[str, str] = {
        "dlq.record": f"dlq:{_LETTER.consumer}:{_LETTER.stream}:{_LETTER.stream_seq}",
        "audit.v1.record": f"audit:{_RECORDED.stream}:{_RECORDED.stream_seq}",
        audit_v1.CHECKPOINT_SUBJECT: f"audit:checkpoint:{_RECORDED.seq}",
    }
    return {"Nats-Msg-Id": records[name] if name in records else f"{TENANT}:{envelope(name).id}"}


def message(name: str) -> dict[str, Any]:
    """The JSON of the example message named `name` (a subject's type or a record's name)."""
    value: msgspec.Struct = RECORDS[name] if name in RECORDS else envelope(name)
    decoded: dict[str, Any] = json.loads(msgspec.json.encode(value))
    return decoded
