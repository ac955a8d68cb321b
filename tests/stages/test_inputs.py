"""Partition sizing: ``ingest.partition_mb`` 0 means what the backend wants."""

from __future__ import annotations

from daskcluster.backends.cpu import CpuBackend
from daskcluster.backends.gpu import GpuBackend
from daskcluster.config import IngestConfig
from daskcluster.stages.inputs import partition_rows


def test_partition_mb_zero_is_by_backend():
    by_backend = IngestConfig()
    assert by_backend.partition_mb == 0
    assert partition_rows(by_backend, 256, "cpu") == int(CpuBackend.partition_mb * 2**20) // 1024 == 65536
    assert partition_rows(by_backend, 256, "gpu") == int(GpuBackend.partition_mb * 2**20) // 1024 == 1048576
    assert partition_rows(IngestConfig(partition_mb=2), 256, "gpu") == 2048
    assert partition_rows(IngestConfig(partition_mb=0.001), 256, "cpu") == 256  # at least 256 rows
    described = IngestConfig.model_fields["partition_mb"].description
    assert f"{CpuBackend.partition_mb:g} on cpu" in described and f"{GpuBackend.partition_mb:g} on gpu" in described
