"""Create one day's ``DaskJob`` (Dask Kubernetes operator) from the template in ``k8s/``, and wait for it.

The nightly ``CronJob`` (``k8s/base/cronjob.yaml``) runs ``python -m daskcluster.k8s submit`` in our own image:
it fills the template's ``__DAY__`` and ``__NAME__`` placeholders, creates the DaskJob through the Kubernetes
API with the pod's service account (only create/get/list on ``daskjobs``), and waits until the operator reports
``Successful`` or ``Failed``, so that ``concurrencyPolicy: Forbid`` keeps the days in order. Creating is
idempotent: a DaskJob that already exists for the day is waited on, not created again.
``python -m daskcluster.k8s render --day D`` prints the same DaskJob for ``kubectl create -f -``.

Only the standard library talks to the API server: the image needs no Kubernetes client.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

log = logging.getLogger(__name__)

__all__ = ["KubeApi", "days_ago", "job_name", "render_daskjob", "submit_daskjob", "wait_daskjob"]

GROUP_PATH = "/apis/kubernetes.dask.org/v1"
NAME_PREFIX = "daskcluster"
PLACEHOLDERS = ("__DAY__", "__NAME__")
FINAL_STATES = ("Successful", "Failed")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# the operator's rule for a DaskCluster name (dask_kubernetes.constants.VALID_CLUSTER_NAME): "<name>-scheduler"
# must fit in 63 characters
VALID_NAME = re.compile(r"^(?=.{,53}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def job_name(day: str, prefix: str = NAME_PREFIX) -> str:
    """``daskcluster-2026-03-01``: one DaskJob (and Dask cluster) per day."""
    name = f"{prefix}-{dt.date.fromisoformat(day).isoformat()}"
    if not VALID_NAME.match(name):
        raise ValueError(f"DaskJob name {name!r} is not a valid Dask cluster name (lowercase RFC 1123, <= 53 chars)")
    return name


def days_ago(n: int, today: dt.date | None = None) -> str:
    """The UTC date ``n`` days before ``today`` as YYYY-MM-DD."""
    today = today or dt.datetime.now(dt.UTC).date()
    return (today - dt.timedelta(days=n)).isoformat()


def _substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    if isinstance(node, str):
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
    return node


def render_daskjob(template: dict, day: str, prefix: str = NAME_PREFIX) -> dict:
    """The template with ``__DAY__`` -> ``day`` and ``__NAME__`` -> ``job_name(day)`` in every string."""
    if template.get("kind") != "DaskJob":
        raise ValueError(f"template is a {template.get('kind')!r}, not a DaskJob")
    name = job_name(day, prefix)
    job = _substitute(copy.deepcopy(template), {"__DAY__": dt.date.fromisoformat(day).isoformat(), "__NAME__": name})
    leftover = [p for p in PLACEHOLDERS if p in json.dumps(job)]
    if leftover:
        raise ValueError(f"placeholders left after rendering: {leftover}")
    return job


def load_template(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


@dataclass
class KubeApi:
    """The few REST calls we need; ``in_cluster()`` uses the pod's service account."""

    base_url: str
    token_file: Path | None = None
    context: ssl.SSLContext | None = None
    timeout_s: float = 30.0

    @classmethod
    def in_cluster(cls) -> KubeApi:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        return cls(f"https://{host}:{port}", SERVICE_ACCOUNT / "token", context)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.token_file is not None:  # re-read: the kubelet rotates projected tokens
            headers["Authorization"] = f"Bearer {self.token_file.read_text().strip()}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self.context) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def _daskjobs(namespace: str) -> str:
    return f"{GROUP_PATH}/namespaces/{namespace}/daskjobs"


def submit_daskjob(api: KubeApi, namespace: str, job: dict) -> str:
    """Create the DaskJob; one that already exists is left alone (a re-run of the CronJob). Returns its name."""
    name = job["metadata"]["name"]
    status, body = api.request("POST", _daskjobs(namespace), job)
    if status == 409:
        log.warning("DaskJob %s/%s already exists: waiting on it", namespace, name)
    elif status >= 300:
        raise RuntimeError(f"creating DaskJob {namespace}/{name} failed ({status}): {body.get('message', body)}")
    else:
        log.warning("DaskJob %s/%s created", namespace, name)
    return name


def wait_daskjob(
    api: KubeApi,
    namespace: str,
    name: str,
    poll_s: float = 30.0,
    timeout_s: float = 86_400.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll ``status.jobStatus`` until the operator says Successful or Failed; returns that state."""
    deadline, state = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        status, body = api.request("GET", f"{_daskjobs(namespace)}/{name}")
        if status >= 300:
            raise RuntimeError(f"reading DaskJob {namespace}/{name} failed ({status}): {body.get('message', body)}")
        new_state = (body.get("status") or {}).get("jobStatus")
        if new_state != state:
            log.warning("DaskJob %s/%s: %s", namespace, name, new_state)
            state = new_state
        if state in FINAL_STATES:
            return state
        sleep(poll_s)
    raise TimeoutError(f"DaskJob {namespace}/{name} still {state} after {timeout_s:.0f} s")


def _namespace(namespace: str | None) -> str:
    if namespace:
        return namespace
    path = SERVICE_ACCOUNT / "namespace"
    return path.read_text().strip() if path.exists() else "default"


DAY_OPTION = click.option("--day", help="YYYY-MM-DD (default: --days-ago days before today, UTC).")
DAYS_AGO_OPTION = click.option(
    "--days-ago", "days_ago_", default=1, show_default=True, help="Which day when --day is not given."
)
TEMPLATE_OPTION = click.option(
    "--template",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="DaskJob template (k8s/base/daskjob.yaml or k8s/gpu/daskjob.yaml).",
)


@click.group()
def main() -> None:
    """Daily DaskJobs for the Dask Kubernetes operator."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")


@main.command()
@TEMPLATE_OPTION
@DAY_OPTION
@DAYS_AGO_OPTION
def render(template, day, days_ago_) -> None:
    """Print the day's DaskJob as YAML (for kubectl create -f -)."""
    click.echo(yaml.safe_dump(render_daskjob(load_template(template), day or days_ago(days_ago_)), sort_keys=False))


@main.command()
@TEMPLATE_OPTION
@DAY_OPTION
@DAYS_AGO_OPTION
@click.option("--namespace", help="Default: the pod's own namespace.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the DaskJob ends.")
@click.option("--poll-s", default=30.0, show_default=True)
@click.option("--timeout-s", default=86_400.0, show_default=True)
def submit(template, day, days_ago_, namespace, wait, poll_s, timeout_s) -> None:
    """Create the day's DaskJob in the cluster (in a pod: its service account) and wait for its end."""
    api, namespace = KubeApi.in_cluster(), _namespace(namespace)
    name = submit_daskjob(api, namespace, render_daskjob(load_template(template), day or days_ago(days_ago_)))
    if wait and wait_daskjob(api, namespace, name, poll_s, timeout_s) != "Successful":
        raise SystemExit(f"DaskJob {namespace}/{name} failed: kubectl logs -n {namespace} {name}-runner")
