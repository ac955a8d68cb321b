"""Every path in a gallery, written once. Paths are gallery-relative strings (what the manifest records).

```
manifest.json                                the commit point (see manifest.py)
snapshots/v<version>/shard-<s>.parquet       a base: every cluster one shard owns (cluster_id % shards == s)
deltas/v<version>/shard-<s>.parquet          a delta: the rows of one shard's clusters that version changed
ids/v<version>-L<level>/bucket-<b>.parquet   a run of the face-id index (+ .bloom.npy), see gallery/ids.py
assignments/day=<day>/v<version>/*.parquet   one row per face of the day: its cluster and how it was decided
quarantine/day=<day>/v<version>/*.parquet    rejected rows, whole, with a reason
reports/day=<day>/v<version>/                summary.json, config.yaml, dask-report.html
quantizers/v<version>.npy                    the gallery's IVF coarse centroids
preprocess/v<version>-centre.npy             the centring mean, when the gallery centres features
lineage/v<version>.parquet                   cumulative merges (old_id -> new_id) of consolidation
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daskcluster.gallery.store import gpath

__all__ = [
    "MANIFEST",
    "DayOutputs",
    "centre_path",
    "day_outputs",
    "lineage_path",
    "quantizer_path",
    "shard_file",
    "version_dir",
]

MANIFEST = "manifest.json"


def version_dir(kind: str, version: int, day: str | None = None) -> str:
    """Gallery-relative directory of one version's output of ``kind``."""
    base = kind if day is None else f"{kind}/day={day}"
    return f"{base}/v{version:06d}"


def shard_file(snapshot_dir: str | Path, shard: int) -> Any:
    """One shard's table in a snapshot directory (local or an object-store URL)."""
    return gpath(snapshot_dir) / f"shard-{shard:05d}.parquet"


def quantizer_path(version: int) -> str:
    return f"quantizers/v{version:06d}.npy"


def centre_path(version: int) -> str:
    return f"preprocess/v{version:06d}-centre.npy"


def lineage_path(version: int) -> str:
    """Gallery-relative path of the lineage table written by ``version``."""
    return f"lineage/v{version:06d}.parquet"


@dataclass(frozen=True)
class DayOutputs:
    """Gallery-relative paths a day's run writes (all new: named by the version it commits)."""

    snapshot: str
    deltas: str
    ids: str
    assignments: str
    quarantine: str
    report: str
    quantizer: str
    preprocess: str

    def paths(self) -> list[str]:
        """Everything the run may write, face-id index runs of every level included (LSM merges on the day
        write ``-L1``, ``-L2``, ...)."""
        level0 = self.ids.removesuffix("-L0")
        return [getattr(self, f.name) for f in dataclasses.fields(self)] + [f"{level0}-L{n}" for n in range(1, 16)]


def day_outputs(version: int, day: str) -> DayOutputs:
    return DayOutputs(
        snapshot=version_dir("snapshots", version),
        deltas=version_dir("deltas", version),
        ids=f"ids/v{version:06d}-L0",
        assignments=version_dir("assignments", version, day),
        quarantine=version_dir("quarantine", version, day),
        report=version_dir("reports", version, day),
        quantizer=quantizer_path(version),
        preprocess=centre_path(version),
    )
