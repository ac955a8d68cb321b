"""Every task name the day and the gallery jobs submit, by the stage it belongs to.

A task's dashboard key is ``<name>-<run token>-<suffix>``; the executors refuse a name missing here, so this map
is complete by construction and benchmarks read stage membership from it (never from a hand-typed copy).
Stage names are the ``stage_seconds`` keys of the day's summary.
"""

from __future__ import annotations

__all__ = ["OTHER", "STAGE_TASKS", "TASK_STAGE", "stage_of"]

STAGE_TASKS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest", "dim-scan"),
    "dedupe": ("id-buckets", "id-rebuild", "bucket", "duplicates", "dedupe", "reasons"),
    "prepare": ("prepare", "centre-load", "centre-sum", "centre-mean"),
    "load-shard": ("load-shard",),
    "assign-train": ("assign-sample", "assign-train", "assign-quantizer"),
    "assign": (
        "gallery-index",
        "assign-calibrate-sample",
        "assign-calibrate-search",
        "assign-calibrate-merge",
        "assign-calibrate-gap",
        "assign-probe",
        "assign-search",
        "assign-merge",
        "assign-audit",
        "assign-agreement",
        "assign-decide",
        "assign-skip",
    ),
    "knn-train": ("knn-sample", "knn-train"),
    "knn-build": ("knn-build",),
    "edges": (
        "unassigned",
        "knn-probe",
        "knn-both",
        "knn-search",
        "knn-merge",
        "knn-reverse",
        "knn-join",
        "neighbours",
        "knn-table",
        "annotate",
        "annotate-merge",
        "edges",
        "calibrate-sample",
        "calibrate-search",
        "calibrate-merge",
        "calibrate-gap",
        "audit-queries",
        "audit-recall",
    ),
    "components": (
        "cc-forest",
        "cc-merge",
        "cc-roots",
        "oversize",
        "part-roots",
        "cut-inputs",
        "cut-bucket",
        "recut",
        "vertex-ids",
        "components",
    ),
    "centre-update": ("centre-sums", "sums", "sums-reduce", "labels", "centre-update"),
    "write": ("write-shard", "write-delta", "write-assignments", "write-ids", "ids-merge", "commit"),
    "compact": ("compact-load", "compact-write"),
    "consolidate": (
        "consolidate-load",
        "consolidate-eligible",
        "consolidate-quantizer",
        "consolidate-sample",
        "consolidate-train",
        "consolidate-index",
        "consolidate-search",
        "consolidate-merge",
        "consolidate-best",
        "consolidate-take",
        "moved",
        "consolidate-absorb",
        "consolidate-write",
    ),
}
OTHER = "other"  # small gathers between stages: counts and statistics
STAGE_TASKS[OTHER] = ("count", "component-stats", "shard-stats")

TASK_STAGE: dict[str, str] = {task: stage for stage, tasks in STAGE_TASKS.items() for task in tasks}


def stage_of(task: str) -> str:
    """The stage of a task name (``KeyError`` for a name the jobs never submit)."""
    return TASK_STAGE[task]
