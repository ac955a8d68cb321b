"""A gallery on S3: an S3-compatible server on 127.0.0.1 (moto's server mode), a real Dask cluster whose
workers write to it, and the same clusters as on a local disk; the commit is a put-if-absent manifest."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest
from distributed import Client, LocalCluster

from daskcluster.eval.synth import SynthSpec, write_dataset
from daskcluster.gallery.manifest import GalleryError, read_manifest, write_manifest
from daskcluster.gallery.queries import face_clusters, gallery_status
from daskcluster.gallery.retention import vacuum
from daskcluster.gallery.store import gpath, put_if_absent
from daskcluster.run.executor import InProcessExecutor
from daskcluster.run.pipeline import run_day

from ..conftest import make_config

pytestmark = pytest.mark.distributed

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "daskcluster-test"


@pytest.fixture(scope="module")
def s3():
    """The server, and the environment every client (workers included) takes its endpoint and keys from."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield f"s3://{BUCKET}"
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    out = tmp_path_factory.mktemp("s3-days")
    return write_dataset(SynthSpec(days=3, faces_per_day=600, identities=120, dim=64, seed=4), out)


def test_three_days_on_s3_equal_the_same_days_on_a_local_disk(s3, days, tmp_path):
    """Input and gallery both in the bucket; the workers read and write there."""
    cfg = make_config("gallery.keep_versions=2", "gallery.id_buckets=4")
    url = f"{s3}/three-days"
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    fs = s3fs.S3FileSystem()
    for d in days:
        fs.put(str(d), f"{BUCKET}/input/{d.name}", recursive=True)
    inputs = [f"{s3}/input/{d.name}" for d in days]  # the day is read off the day=YYYY-MM-DD URL
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR) as lc,
        Client(lc) as client,
    ):
        remote = [run_day(client, d, url, cfg) for d in inputs]
    local = [run_day(InProcessExecutor(), d, tmp_path / "g", cfg) for d in days]
    assert [r.status for r in remote] == ["committed"] * 3
    assert [r.day for r in remote] == [r.day for r in local]
    assert all(r.summary["input"][0].startswith(f"{s3}/input/day=") for r in remote)
    assert face_clusters(url).equals(face_clusters(tmp_path / "g"))
    m = read_manifest(url)
    assert m.n_faces == read_manifest(tmp_path / "g").n_faces == sum(r.summary["faces_valid"] for r in local)
    fs.invalidate_cache()
    versions = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{BUCKET}/three-days/_manifests"))
    assert versions[-1] == f"v{m.version:06d}.json" and len(versions) == m.version
    assert fs.exists(f"{BUCKET}/three-days/{m.days[-1].report}/dask-report.html")
    status = gallery_status(url)
    assert status["bytes_on_disk"]["assignments"] > 0 and status["bytes_on_disk"]["manifest"] > 0
    assert vacuum(url, m, 2, dry_run=True).removed == []  # the run vacuumed as it went


def test_a_second_writer_of_one_version_is_refused(s3, days):
    url = f"{s3}/race"
    run_day(InProcessExecutor(), days[0], url, make_config("gallery.id_buckets=4"))
    m = read_manifest(url)
    rival = dataclasses.replace(m, n_faces=0)
    with pytest.raises(GalleryError, match="committed by another writer first"):
        write_manifest(url, rival)  # the same version again: put-if-absent refuses it
    assert read_manifest(url).n_faces == m.n_faces
    newer = dataclasses.replace(m, version=m.version + 1)
    write_manifest(url, newer)
    assert read_manifest(url).version == m.version + 1


def test_put_if_absent_on_s3_and_locally(s3, tmp_path):
    for path in (gpath(f"{s3}/once/x.json"), tmp_path / "once" / "x.json"):
        assert put_if_absent(path, b"first")
        assert not put_if_absent(path, b"second")
        assert path.read_bytes() == b"first"
