"""Typed, validated run configuration.

Precedence (lowest first): packaged defaults < YAML file < environment (``DASKCLUSTER_SECTION__KEY=value``)
< ``--set section.key=value``. Every similarity is a cosine similarity in [-1, 1].
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "DASKCLUSTER_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Section):
    on_bad_row: Literal["quarantine", "error"] = "quarantine"
    max_bad_fraction: float = Field(0.5, ge=0.0, le=1.0, description="abort when more rows than this are bad")
    partition_mb: float = Field(
        0.0,
        ge=0,
        description="feature MB per partition (float32); 0 = by backend: 64 on cpu, 1024 on gpu "
        "(the backend's partition_mb)",
    )
    feature_column: str = "feature"
    id_column: str = "face_id"


class AssignConfig(_Section):
    threshold: float = Field(0.6, ge=-1.0, le=1.0, description="cosine similarity to join a gallery cluster")
    margin: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="when the two best clusters both pass the threshold "
        "and are closer than this, the face goes to step 2 instead (0 = off)",
    )


class ClusterConfig(_Section):
    threshold: float = Field(0.6, ge=-1.0, le=1.0, description="cosine similarity of a k-NN edge")
    k: int = Field(10, ge=1, le=1024, description="neighbours per face in the k-NN graph")
    mutual: bool = Field(False, description="keep an edge only when each end is among the other's k neighbours")
    min_shared: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="keep an edge only when its ends share at least "
        "this fraction of their neighbourhoods (each face counts in its own; 0 = off)",
    )
    link: Literal["all", "density"] = Field(
        "all", description="density: each face keeps only its edge to its most similar neighbour of higher density"
    )
    max_size: int = Field(
        10_000,
        ge=0,
        description="components larger than this are re-cut with a rising threshold until their pieces fit (0 = off)",
    )
    recut_step: float = Field(
        0.1, gt=0.0, lt=1.0, description="each re-cut raises the threshold t to t + (1 - t) * recut_step"
    )


class QualityConfig(_Section):
    column: str | None = Field(
        "quality", description="metadata column with a quality score in [0, 1], used when the input has it"
    )
    use_norm: bool = Field(False, description="use the raw feature norm as a quality signal (MagFace-style)")
    norm_range: tuple[float, float] = Field((0.0, 1.0), description="raw norms mapped to quality 0 and 1")
    floor: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="faces of lower quality (mean of the signals) neither seed, chain nor update clusters (0 = off)",
    )
    join_threshold: float = Field(
        0.75, ge=-1.0, le=1.0, description="similarity a low-quality face needs to join an existing cluster"
    )

    @model_validator(mode="after")
    def _check_range(self) -> QualityConfig:
        if not self.norm_range[1] > self.norm_range[0]:
            raise ValueError(f"norm_range {list(self.norm_range)}: the second value must be larger")
        return self


class PreprocessConfig(_Section):
    centre: bool = Field(
        False,
        description="subtract the mean unit feature learned from the first day (kept "
        "in the gallery) before normalising",
    )


class ConsolidateConfig(_Section):
    after_day: bool = Field(False, description="consolidate the gallery at the end of every run-day")
    threshold: float = Field(0.8, ge=-1.0, le=1.0, description="centre similarity for two clusters to merge")
    k: int = Field(4, ge=1, le=64, description="neighbouring centres examined per cluster")
    min_count: int = Field(2, ge=1, description="clusters with fewer faces never merge (their centre is noise)")


class SearchConfig(_Section):
    exact: bool = False
    flat_below: int = Field(20_000, ge=0, description="database vectors under which flat (exact) search is used")
    nlist: int = Field(0, ge=0, description="IVF lists; 0 = chosen from the data size")
    nprobe: int = Field(0, ge=0, description="most IVF lists a query probes; 0 = chosen from nlist")
    gap: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="probe the lists whose centroid scores within this of the nearest; 0 = chosen per day from "
        "an exact sample for search.target_recall",
    )
    target_recall: float = Field(
        0.99, gt=0.0, le=1.0, description="edge recall (by id, edges >= the threshold) the chosen gap aims at"
    )
    assign_recall: float = Field(
        0.995, gt=0.0, le=1.0, description="share of faces whose best gallery cluster the assignment's gap finds"
    )
    both_ways: bool = Field(
        True,
        description="the k-NN graph keeps each product for both faces: an edge is found when either end probes "
        "the other's list (CPU backend)",
    )
    spill: int = Field(
        2,
        ge=0,
        le=16,
        description="further IVF lists a gallery centre far from every centroid is stored in (CPU backend; "
        "0 = off): the assignment reaches it with a smaller gap",
    )
    spill_below: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description="a gallery centre whose best centroid scores under this is spilled into search.spill more lists",
    )
    codec: Literal["flat", "pq"] = Field(
        "flat",
        description="how the assignment's IVF stores the gallery centres: flat floats, or pq codes of "
        "search.pq_bytes bytes re-ranked exactly (for galleries larger than device memory)",
    )
    pq_bytes: int = Field(
        128, ge=1, le=512, description="bytes per centre under search.codec pq (divides d; at most d)"
    )
    rerank: int = Field(
        8, ge=1, le=256, description="under search.codec pq: candidates per neighbour re-ranked by exact score"
    )
    train_sample: int = Field(50_000, ge=1000, description="vectors sampled to train the coarse quantizer")
    train_iters: int = Field(
        6, ge=1, le=100, description="k-means iterations of the step-2 graph's quantizer, trained every day"
    )
    gallery_train_iters: int = Field(
        12, ge=1, le=100, description="k-means iterations of the gallery's quantizer, trained rarely and kept for days"
    )
    shard_mb: float = Field(512.0, gt=0, description="features per k-NN graph shard (float32 MB)")
    audit: bool = Field(True, description="report the edge recall on the exact sample's other half")
    audit_sample: int = Field(
        2000, ge=10, description="faces searched exactly each day: half choose the probing gap, half audit"
    )


class GalleryConfig(_Section):
    shards: int = Field(0, ge=0, description="gallery shards, fixed at the first day; 0 = from the budget below")
    max_clusters: int = Field(1_000_000, ge=1, description="clusters the gallery is sized for")
    shard_mb: float = Field(256.0, gt=0, description="cluster means (float32) per shard at max_clusters")
    keep_versions: int = Field(
        7, ge=0, description="states kept by vacuum after each day (0: keep all); a re-run reaches keep-1 days back"
    )
    compact_fraction: float = Field(
        0.5, gt=0, description="compact (fold the deltas into a new base) once their rows exceed this x the base"
    )
    id_buckets: int = Field(
        0, ge=0, le=65536, description="face-id index buckets, fixed at the first day; 0 = one per 1M faces of it"
    )
    quality_max_faces: int = Field(
        1_000_000, ge=0, description="the summary scores the whole gallery (reads every assignment) up to this size"
    )


class DaskConfig(_Section):
    workers: int = Field(0, ge=0, description="local workers; 0 = fit the machine")
    threads_per_worker: int = Field(0, ge=0, description="0 = fit the machine")
    memory_limit: str = "auto"
    dashboard_port: int = Field(8787, ge=0, le=65535)
    rmm_pool_size: str | None = Field(
        None, description="GPU workers' RMM memory pool, e.g. 40GB (backend gpu, with dask-cuda); none: no pool"
    )
    protocol: Literal["tcp", "ucx"] = Field("tcp", description="comm protocol of a local cluster (ucx: with ucx-py)")


class Config(_Section):
    backend: Literal["auto", "cpu", "gpu"] = "cpu"
    ingest: IngestConfig = IngestConfig()
    assign: AssignConfig = AssignConfig()
    cluster: ClusterConfig = ClusterConfig()
    quality: QualityConfig = QualityConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    search: SearchConfig = SearchConfig()
    consolidate: ConsolidateConfig = ConsolidateConfig()
    gallery: GalleryConfig = GalleryConfig()
    dask: DaskConfig = DaskConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """Stable hash of the resolved config, used to key artefacts."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A configuration value is unknown or invalid; the message names the field."""


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text.strip() else ""


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _env_overrides(environ: dict[str, str]) -> list[tuple[str, Any]]:
    items = []
    for name, value in sorted(environ.items()):
        if name.startswith(ENV_PREFIX) and "__" in name:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            items.append((dotted, _parse_value(value)))
    return items


def parse_set(assignments: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings (values are YAML scalars)."""
    out = []
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out.append((key.strip(), _parse_value(value)))
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), environ: dict[str, str] | None = None
) -> Config:
    """Resolve the configuration; raises ConfigError naming the offending key."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        tree = loaded
    env = os.environ if environ is None else environ
    for dotted, value in _env_overrides(dict(env)) + parse_set(overrides):
        _set_dotted(tree, dotted, value)
    return validate_config(tree)


def validate_config(tree: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid config: {problems}") from None
