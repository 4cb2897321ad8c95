"""Response bodies of the HTTP API (msgspec Structs, so OpenAPI is generated from them)."""

from __future__ import annotations

from maskline.contracts.http_v1 import ArtifactView, SegmentationView, job_links
from maskline.shared.jobs.state import JobState


def job_path(job_id: str) -> str:
    return f"/v1/segmentations/{job_id}"


def segmentation_view(state: JobState) -> SegmentationView:
    base = job_path(state.job_id)
    return SegmentationView(
        id=state.job_id,
        status=state.status,
        created=state.created,
        updated=state.updated,
        options=state.options,
        filename=state.filename,
        model=state.model,
        width=state.width,
        height=state.height,
        regions=state.regions,
        confidence=state.confidence,
        timings_ms=state.timings_ms,
        artifacts={
            name: ArtifactView(href=f"{base}/{name}", content_type=ref.content_type, size=ref.size, sha256=ref.sha256)
            for name, ref in state.artifacts.items()
        },
        error=state.error,
        links=job_links("segmentation", state.job_id),
    )
