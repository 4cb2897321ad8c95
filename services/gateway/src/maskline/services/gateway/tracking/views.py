"""A job's state as the HTTP API shows it (the bodies themselves are contracts: `http_v1`)."""

from __future__ import annotations

from maskline.contracts import routes
from maskline.contracts.http_v1 import ArtifactView, SegmentationView, job_links
from maskline.shared.jobs.state import JobState


def job_path(job_id: str) -> str:
    return routes.fill(routes.SEGMENTATION, job_id=job_id)


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
        objects=state.objects,
        timings_ms=state.timings_ms,
        artifacts={
            name: ArtifactView(href=f"{base}/{name}", content_type=ref.content_type, size=ref.size, sha256=ref.sha256)
            for name, ref in state.artifacts.items()
        },
        error=state.error,
        links=job_links("segmentation", state.job_id),
    )
