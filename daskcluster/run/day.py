"""What every stage of one day's run reads (:class:`Day`), and the counts the stages return (:class:`DayCounts`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from daskcluster.config import Config
from daskcluster.run.plan import DayPlan

__all__ = ["Day", "DayCounts"]


@dataclass(frozen=True)
class Day:
    """One planned day: the plan, the config, the backend resolved once on the driver, and the dimension
    (the plan's, or the one scanned from a first day's variable-length lists)."""

    plan: DayPlan
    cfg: Config
    backend: str
    dim: int

    def path(self, rel: str) -> str:
        """Absolute path of a gallery-relative one."""
        return str(self.plan.gallery / rel)


@dataclass
class DayCounts:
    """The day's figures, in the order the summary lists them. ``None``: does not apply to this day (left out)."""

    faces_in: int = 0
    faces_valid: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    low_quality: int = 0
    assign_quantizer: str | None = None  # "trained" or "reused <path>" (IVF search only)
    assigned: int = 0
    assign_ambiguous: int | None = None
    assigned_low_quality: int | None = None
    assign_index: str | None = None
    assign_agreement: float | None = None  # search.audit: audit faces with the exact search's best cluster
    knn_index: str | None = None
    edge_recall: float | None = None  # search.audit only
    new_clusters: int = 0
    singletons: int = 0
    largest_new_cluster: int = 0
    cut_components: list[dict] = field(default_factory=list)
    knn_edges: int = 0
    gallery_clusters: int = 0
    gallery_faces: int = 0
    largest_cluster: int = 0

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise AttributeError(f"DayCounts has no field {key!r}")
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
