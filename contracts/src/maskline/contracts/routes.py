"""Every HTTP path of the gateway, once: the clients fill them (`fill`), and a test holds them equal
to the routes the gateway serves (its OpenAPI document), so neither can drift from the other.

Templates name their parameters as the OpenAPI document does (`{job_id}`).
"""

from __future__ import annotations

import re
from urllib.parse import quote

SEGMENTATIONS = "/v1/segmentations"
SEGMENTATION = "/v1/segmentations/{job_id}"
SEGMENTATION_OUTPUT = "/v1/segmentations/{job_id}/{artifact}"
REPLAY = "/v1/segmentations/{job_id}/replay"
REPLAY_RESULT = "/v1/segmentations/{job_id}/replays/{replay_id}"
EXPORTS = "/v1/exports/segmentations"
UPLOADS = "/v1/uploads"
JOB = "/v1/jobs/{job_id}"
JOB_ARTIFACT = "/v1/jobs/{job_id}/artifacts/{name}"
JOB_EVENTS = "/v1/jobs/{job_id}/events"
WEBHOOKS = "/v1/webhooks"
#: People and sign-in (1.14).
SIGN_IN = "/v1/sign-in"
SIGN_IN_METHODS = "/v1/sign-in/methods"
SIGN_IN_OIDC = "/v1/sign-in/oidc"
SIGN_IN_OIDC_CALLBACK = "/v1/sign-in/oidc/callback"
SIGN_OUT = "/v1/sign-out"
ME = "/v1/me"
MY_KEYS = "/v1/me/keys"
MY_KEY = "/v1/me/keys/{key_id}"
MY_PASSWORD = "/v1/me/password"
USERS = "/v1/users"
USER = "/v1/users/{user}"
USER_ROLE = "/v1/users/{user}/role"
USERS_POLICY = "/v1/users/policy"
USERS_TRAIL = "/v1/users/trail"
#: Label Studio's ML-backend protocol (its backend URL is `/v1/label-studio/<model>`).
LABEL_STUDIO_HEALTH = "/v1/label-studio/{model}/health"
LABEL_STUDIO_SETUP = "/v1/label-studio/{model}/setup"
LABEL_STUDIO_PREDICT = "/v1/label-studio/{model}/predict"

MODELS = "/v1/models"
MODEL_VERSION = "/v1/models/{name}/{version}"
MODEL_WEIGHTS = "/v1/models/weights/{sha256}"
MERGES = "/v1/models/merges"
QUANTIZATIONS = "/v1/models/quantizations"
RELEASE = "/v1/models/{name}/{version}/release"
EDITS = "/v1/models/{name}/{version}/edits"
FEATURE_MAPS = "/v1/models/{name}/{version}/feature-maps"
GRAPH = "/v1/models/{name}/{version}/graph"
REPORT = "/v1/models/{name}/{version}/reports/{kind}"
EVALUATIONS = "/v1/models/{name}/{version}/evaluations"
VERSION_QUALITY = "/v1/models/{name}/{version}/quality"
QUALITY = "/v1/quality"
COMPARE = "/v1/models/{name}/compare"
COMPARE_MASKS = "/v1/models/{name}/compare/masks/{image}"
ALIASES = "/v1/models/{name}/aliases"
ALIAS = "/v1/models/{name}/aliases/{alias}"
ALIAS_ROLLBACK = "/v1/models/{name}/aliases/{alias}/rollback"
ALIAS_ROLLOUT = "/v1/models/{name}/aliases/{alias}/rollout"
ALIAS_GUARD = "/v1/models/{name}/aliases/{alias}/guard"
ALIAS_TRAIL = "/v1/models/{name}/aliases/{alias}/trail"
ACCESS = "/v1/access"
ACCESS_REQUESTS = "/v1/models/{name}/access-requests"
ACCESS_DECISION = "/v1/models/{name}/access/{grantee}"
ACCESS_TRAIL = "/v1/models/{name}/access/{grantee}/trail"

TRAININGS = "/v1/trainings"
TRAINING = "/v1/trainings/{job_id}"
SWEEPS = "/v1/sweeps"
SWEEP = "/v1/sweeps/{job_id}"
RUNS = "/v1/runs"
RUN = "/v1/runs/{run}"
RUN_REPRODUCE = "/v1/runs/{run}/reproduce"
RUNS_COMPARE = "/v1/runs/compare"

DATASET = "/v1/datasets/{dataset}"
DATASET_FILE = "/v1/datasets/{dataset}/{part}/{filename}"
DATASET_EXPAND = "/v1/datasets/{dataset}/expand"
DATASET_MANIFEST = "/v1/datasets/{dataset}/manifest"
FILES = "/v1/files"
FILE = "/v1/files/{area}/{path}"

FEDERATIONS = "/v1/federations"
FEDERATION = "/v1/federations/{federation}"
FEDERATION_MODEL = "/v1/federations/{federation}/model"
FEDERATION_UPDATE = "/v1/federations/{federation}/rounds/{round}/update"
FEDERATION_TRAINING = "/v1/federations/{federation}/training"

SERVICES = "/v1/services"
DEAD_LETTERS = "/v1/dlq"
REDRIVE = "/v1/dlq/{seq}/redrive"
AUDIT = "/v1/audit"
AUDIT_PUBLIC_KEY = "/v1/audit/public-key"
AUDIT_VERIFY = "/v1/audit/verify"
DASHBOARD_JOBS = "/v1/dashboard/jobs"
METRICS = "/metrics"
LIVE = "/health/live"
READY = "/health/ready"

INFERENCE_SERVER = "/v2"
INFERENCE_LIVE = "/v2/health/live"
INFERENCE_READY = "/v2/health/ready"
INFERENCE_MODEL = "/v2/models/{name}"
INFERENCE_MODEL_READY = "/v2/models/{name}/ready"
INFERENCE_INFER = "/v2/models/{name}/infer"
INFERENCE_VERSION = "/v2/models/{name}/versions/{version}"
INFERENCE_VERSION_READY = "/v2/models/{name}/versions/{version}/ready"
INFERENCE_VERSION_INFER = "/v2/models/{name}/versions/{version}/infer"

#: Every path above.
ALL: frozenset[str] = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and v.startswith("/"))

_PARAMETER = re.compile(r"\{(\w+)\}")


def fill(template: str, **values: object) -> str:
    """The path with its parameters filled in, each quoted as one path segment (a file's path keeps its `/`)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return quote(str(values[name]), safe="/" if name == "path" else "")

    return _PARAMETER.sub(one, template)
