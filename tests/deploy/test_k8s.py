"""The deployment artefacts, offline: k8s/ overlays, the DaskJob templates, the container images.

Each overlay is rendered (tests/deploy/kustomize.py; checked against ``kubectl kustomize`` when kubectl is here). Every
built-in object validates strictly against the Kubernetes schemas (kubernetes-validate), the DaskJob templates and
the ServiceMonitor against their operators' CRD schemas (vendored in k8s/crds/, validated with jsonschema, unknown
fields refused), and what the Dask operator builds from a DaskJob (runner Pod, scheduler and worker Deployments,
scheduler Service, DaskCluster) validates too. Then the policies: non-root, read-only, no capabilities, seccomp,
limits everywhere, GPUs on every gpu worker, pinned images matching the Makefile's tag, RBAC limited to daskjobs,
no public Service, and container arguments that the real commands accept.
"""

from __future__ import annotations

import copy
import functools
import http.server
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml

import daskcluster
from daskcluster.cli import commands as cli
from daskcluster.config import load_config
from daskcluster.deploy import k8s as dk8s

from .kustomize import build

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("base", "cpu", "gpu")
FLAVOUR = {"base": "cpu", "cpu": "cpu", "gpu": "gpu"}
K8S_VERSIONS = ("1.27.0", "1.33.0")  # 1.27: CronJob timeZone is GA
CRD_GROUPS = {"kubernetes.dask.org", "monitoring.coreos.com"}
DAY = "2026-03-01"


# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def rendered(overlay) -> list[dict]:
    return build(K8S / overlay)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def config_map(objects: list[dict], name: str) -> dict:
    (cm,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == name]
    return cm


@pytest.fixture(scope="module")
def daskjob(rendered) -> dict:
    """The overlay's DaskJob template (ConfigMap daskcluster-daskjob) rendered for one day."""
    template = yaml.safe_load(config_map(rendered, "daskcluster-daskjob")["data"]["daskjob.yaml"])
    return dk8s.render_daskjob(template, DAY)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl: the renderer is checked where it is")
def test_renderer_equals_kubectl_kustomize(overlay, rendered):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    theirs = [d for d in yaml.safe_load_all(out.stdout) if d]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(map(key, theirs))
    assert {key(o): o for o in rendered} == {key(o): o for o in theirs}


def test_overlay_contents(overlay, rendered):
    kinds = sorted(o["kind"] for o in rendered)
    expected = [
        "ConfigMap",
        "ConfigMap",
        "CronJob",
        "PersistentVolumeClaim",
        "PersistentVolumeClaim",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    assert kinds == sorted(expected + (["ServiceMonitor"] if overlay == "gpu" else []))
    for obj in rendered:
        assert obj["metadata"]["namespace"] == "daskcluster", obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "daskcluster"


# ---------------------------------------------------------------- schemas


def test_builtin_objects_validate_strictly(rendered):
    for obj in rendered:
        if obj["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@functools.cache
def crd_validator(name: str, kind: str) -> jsonschema.Draft7Validator:
    """A validator of the CRD's v1 schema that, like the API server with strict field validation, refuses unknown
    fields (the operator would silently prune them)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are large
    docs = yaml.load_all((K8S / "crds" / name).read_text(), Loader=loader)
    (crd,) = [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = openapi_to_jsonschema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    group = crd["spec"]["group"]
    schema["properties"] |= {
        "apiVersion": {"const": f"{group}/v1"},
        "kind": {"const": kind},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    }
    schema["additionalProperties"] = False
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return jsonschema.Draft7Validator(schema)


def openapi_to_jsonschema(node):
    """Kubernetes structural schema -> JSON schema: nullable, int-or-string, preserve-unknown-fields, strict."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


def schema_errors(validator: jsonschema.Draft7Validator, obj: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_daskjob_validates_against_operator_crd(daskjob):
    assert schema_errors(crd_validator("daskjob.yaml", "DaskJob"), daskjob) == []


def test_crd_validation_refuses_unknown_and_mistyped_fields(daskjob):
    validator = crd_validator("daskjob.yaml", "DaskJob")
    typo = copy.deepcopy(daskjob)
    typo["spec"]["job"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    mistyped = copy.deepcopy(daskjob)
    mistyped["spec"]["cluster"]["spec"]["scheduler"]["service"]["ports"][0]["targetPort"] = 8786
    assert any("imagePullPolice" in e for e in schema_errors(validator, typo))
    assert schema_errors(validator, mistyped)


def operator_objects(job: dict) -> list[dict]:
    """What the Dask operator creates from a DaskJob (dask_kubernetes/operator/controller/controller.py:
    build_cluster_spec, build_scheduler_*_spec, build_worker_deployment_spec, build_job_pod_spec)."""
    name, cluster = job["metadata"]["name"], job["spec"]["cluster"]["spec"]
    address = {"name": "DASK_SCHEDULER_ADDRESS", "value": f"tcp://{name}-scheduler.daskcluster.svc.cluster.local:8786"}
    labels = {**job["metadata"]["labels"], "dask.org/cluster-name": name}

    def pod_spec(spec: dict, *env: dict) -> dict:
        spec = copy.deepcopy(spec)
        for c in spec["containers"]:
            c["env"] = [*c.get("env", []), *env]
        return spec

    def deployment(suffix: str, component: str, spec: dict) -> dict:
        meta = {"name": f"{name}-{suffix}", "labels": {**labels, "dask.org/component": component}}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": meta["labels"]},
                "template": {"metadata": meta, "spec": spec},
            },
        }

    worker_name = {"name": "DASK_WORKER_NAME", "value": f"{name}-default-worker-0123456789"}
    return [
        {
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskCluster",
            "metadata": {"name": name, "labels": labels},
            "spec": cluster,
        },
        deployment("scheduler", "scheduler", pod_spec(cluster["scheduler"]["spec"])),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-scheduler", "labels": labels},
            "spec": cluster["scheduler"]["service"],
        },
        deployment("default-worker-0123456789", "worker", pod_spec(cluster["worker"]["spec"], worker_name, address)),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-runner", "labels": labels},
            "spec": pod_spec(job["spec"]["job"]["spec"], address),
        },
    ]


def test_operator_built_objects_validate(daskjob):
    cluster_validator = crd_validator("daskcluster.yaml", "DaskCluster")
    for obj in operator_objects(daskjob):
        if obj["kind"] == "DaskCluster":
            assert schema_errors(cluster_validator, obj) == []
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_servicemonitor_validates_and_selects_the_scheduler_service(overlay, rendered, daskjob):
    monitors = by_kind(rendered, "ServiceMonitor")
    if overlay != "gpu":
        assert monitors == []
        return
    (monitor,) = monitors
    assert schema_errors(crd_validator("servicemonitor.yaml", "ServiceMonitor"), monitor) == []
    service = next(o for o in operator_objects(daskjob) if o["kind"] == "Service")
    service_labels = {**service["metadata"]["labels"], "dask.org/component": "scheduler"}  # set by the operator
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"] if p["port"] == 8787}


# ---------------------------------------------------------------- policies


def pod_specs(rendered: list[dict], job: dict) -> dict[str, dict]:
    (cron,) = by_kind(rendered, "CronJob")
    cluster = job["spec"]["cluster"]["spec"]
    return {
        "submitter": cron["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "runner": job["spec"]["job"]["spec"],
        "scheduler": cluster["scheduler"]["spec"],
        "worker": cluster["worker"]["spec"],
    }


def test_every_pod_is_non_root_read_only_without_capabilities(rendered, daskjob):
    for role, spec in pod_specs(rendered, daskjob).items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, role
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, role
        mounts_needed = {"/scratch"}  # the images' HOME, TMPDIR and Dask/matplotlib scratch
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (role, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (role, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (role, c["name"])
            assert sc.get("privileged") is not True and sc.get("runAsUser", 1) != 0, (role, c["name"])
            assert mounts_needed <= {m["mountPath"] for m in c["volumeMounts"]}, (role, c["name"])


def test_every_container_has_requests_and_limits(rendered, daskjob):
    for role, spec in pod_specs(rendered, daskjob).items():
        for c in spec["containers"]:
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (role, c["name"], kind)


def test_gpu_overlay_puts_one_gpu_on_every_worker(overlay, rendered, daskjob):
    specs = pod_specs(rendered, daskjob)
    worker = specs["worker"]
    gpus = {
        role: [c["resources"]["limits"].get("nvidia.com/gpu") for c in s["containers"]] for role, s in specs.items()
    }
    backend = yaml.safe_load(config_map(rendered, "daskcluster-config")["data"]["daskcluster.yaml"])["backend"]
    if FLAVOUR[overlay] == "cpu":
        assert all(g is None for gs in gpus.values() for g in gs) and backend == "cpu"
        assert [c["command"] for c in worker["containers"]] == [["dask", "worker"]]
        return
    assert backend == "gpu"
    assert gpus == {"submitter": [None], "runner": [None], "scheduler": [None], "worker": ["1"]}
    (c,) = worker["containers"]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert c["command"] == ["dask-cuda-worker"] and "--rmm-pool-size" in c["args"]
    assert worker["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker["tolerations"]


def test_images_are_pinned_to_the_package_version(overlay, rendered, daskjob):
    flavour, version = FLAVOUR[overlay], daskcluster.__version__
    images = {
        role: frozenset(c["image"] for c in spec["containers"]) for role, spec in pod_specs(rendered, daskjob).items()
    }
    assert images.pop("submitter") == {f"daskcluster:{version}-cpu"}  # a few seconds of Python: the small image
    assert set(images.values()) == {frozenset({f"daskcluster:{version}-{flavour}"})}
    make = subprocess.run(["make", "-n", f"image-{flavour}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert make.returncode == 0, make.stderr
    assert f"-t daskcluster:{version}-{flavour} " in make.stdout
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_role_grants_only_daskjobs_to_the_cronjob(rendered):
    (role,), (binding,), (account,), (cron,) = (
        by_kind(rendered, k) for k in ("Role", "RoleBinding", "ServiceAccount", "CronJob")
    )
    assert role["rules"] == [
        {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskjobs"], "verbs": ["create", "get", "list"]}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert by_kind(rendered, "ClusterRole") == [] and by_kind(rendered, "ClusterRoleBinding") == []


def test_cronjob_creates_one_daskjob_a_day_in_order(rendered, tmp_path):
    (cron,) = by_kind(rendered, "CronJob")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and spec["timeZone"] == "Etc/UTC"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "daskcluster.k8s"] and c["args"][0] == "submit"
    args = list(c["args"][1:])
    assert options_used(args) <= click_params(dk8s.submit)
    # parse them with the real command, the template being the one its ConfigMap mounts there
    configmaps = {o["metadata"]["name"]: o for o in by_kind(rendered, "ConfigMap")}
    template_path = args[args.index("--template") + 1]
    template = mounted_file(pod, c, template_path, configmaps)
    assert template == config_map(rendered, "daskcluster-daskjob")["data"]["daskjob.yaml"]
    (tmp_path / "t.yaml").write_text(template)
    params = dk8s.submit.make_context(
        "submit", [str(tmp_path / "t.yaml") if a == template_path else a for a in args]
    ).params
    assert params["wait"] is True and params["days_ago_"] == 1 and params["day"] is None


def test_daskjob_template_names_and_days(daskjob):
    assert daskjob["metadata"]["name"] == f"daskcluster-{DAY}"
    assert dk8s.VALID_NAME.match(daskjob["metadata"]["name"])
    service = daskjob["spec"]["cluster"]["spec"]["scheduler"]["service"]
    assert service["type"] == "ClusterIP"  # the dashboard only through kubectl port-forward
    assert service["selector"] == {
        "dask.org/cluster-name": daskjob["metadata"]["name"],
        "dask.org/component": "scheduler",
    }
    assert daskjob["spec"]["job"]["spec"]["restartPolicy"] == "Never"  # a failed day ends Failed
    assert "__" not in json.dumps(daskjob)


def test_no_public_services(rendered):
    assert by_kind(rendered, "Service") == [] and by_kind(rendered, "Ingress") == []


def test_volumes_and_configmaps_referenced_exist(rendered, daskjob):
    claims = {o["metadata"]["name"] for o in by_kind(rendered, "PersistentVolumeClaim")}
    maps = {o["metadata"]["name"] for o in by_kind(rendered, "ConfigMap")}
    for role, spec in pod_specs(rendered, daskjob).items():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            for m in c["volumeMounts"]:
                v = volumes[m["name"]]
                if "persistentVolumeClaim" in v:
                    assert v["persistentVolumeClaim"]["claimName"] in claims, (role, m)
                if "configMap" in v:
                    assert v["configMap"]["name"] in maps, (role, m)
    for claim in by_kind(rendered, "PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # runner and workers on several nodes


# ---------------------------------------------------------------- the commands in the containers


def click_params(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}


def options_used(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("-")}


def mounted_file(spec: dict, container: dict, path: str, configmaps: dict[str, dict]) -> str | None:
    """The content of ``path`` in ``container`` when it comes from a ConfigMap volume."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in container["volumeMounts"]:
        if path.startswith(m["mountPath"].rstrip("/") + "/") and "configMap" in volumes[m["name"]]:
            return configmaps[volumes[m["name"]]["configMap"]["name"]]["data"][path[len(m["mountPath"]) + 1 :]]
    return None


def test_runner_runs_a_real_run_day(rendered, daskjob, tmp_path):
    spec = daskjob["spec"]["job"]["spec"]
    (c,) = spec["containers"]
    assert c["command"] == ["daskcluster"]
    args = list(c["args"])
    split = args.index("run-day")
    assert options_used(args[:split]) <= click_params(cli.main)
    assert options_used(args[split + 1 :]) <= click_params(cli.run_day_cmd)
    # parse them with the real command (the config file replaced by its ConfigMap content)
    configmaps = {o["metadata"]["name"]: o for o in by_kind(rendered, "ConfigMap")}
    config_path = args[args.index("--config") + 1]
    config_text = mounted_file(spec, c, config_path, configmaps)
    assert config_text is not None, "--config must come from the daskcluster-config ConfigMap"
    (tmp_path / "c.yaml").write_text(config_text)
    load_config(tmp_path / "c.yaml", [], environ={})  # a valid daskcluster config
    local = [str(tmp_path / "c.yaml") if a == config_path else a for a in args[split + 1 :]]
    params = cli.run_day_cmd.make_context("run-day", local).params
    assert params["scheduler"] == "$(DASK_SCHEDULER_ADDRESS)" and params["day"] == DAY
    assert params["input_path"].endswith(f"day={DAY}")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/data/gallery"].get("readOnly") is not True and params["gallery"].startswith("/data/gallery")
    assert mounts["/data/input"]["readOnly"] is True and params["input_path"].startswith("/data/input/")


def test_scheduler_and_worker_commands_are_real(overlay, daskjob):
    from distributed.cli import dask_scheduler, dask_worker

    cluster = daskjob["spec"]["cluster"]["spec"]
    (sched,) = cluster["scheduler"]["spec"]["containers"]
    assert sched["command"] == ["dask", "scheduler"]
    assert options_used(sched["args"]) <= click_params(dask_scheduler.main)
    assert {"scheduler", "worker"} <= {e.name for e in importlib.metadata.entry_points(group="dask_cli")}
    (worker,) = cluster["worker"]["spec"]["containers"]
    if worker["command"] == ["dask", "worker"]:
        assert options_used(worker["args"]) <= click_params(dask_worker.main)
    else:
        assert worker["command"] == ["dask-cuda-worker"]  # its options: test_dask_cuda_worker_options
    expands = re.compile(r"\$\((\w+)\)")
    for c, env in ((sched, set()), (worker, {"DASK_SCHEDULER_ADDRESS", "DASK_WORKER_NAME"})):
        assert {v for a in c.get("args", []) for v in expands.findall(a)} <= env  # what the operator sets
    ports = {p["name"]: p["containerPort"] for p in sched["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    annotations = cluster["scheduler"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8787"


def test_dask_cuda_worker_options():
    dask_cuda_cli = pytest.importorskip("dask_cuda.cli", reason="dask-cuda (the gpu extra) is not installed")
    template = yaml.safe_load((K8S / "gpu" / "daskjob.yaml").read_text())
    (worker,) = template["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"]
    assert options_used(worker["args"]) <= click_params(dask_cuda_cli.worker)
    assert "dask-cuda-worker" in {e.name for e in importlib.metadata.entry_points(group="console_scripts")}


# ---------------------------------------------------------------- container images


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_dockerfiles(flavour):
    steps = dockerfile(ROOT / "docker" / f"Dockerfile.{flavour}")
    bases = [args.split()[0] for op, args in steps if op == "FROM"]
    assert len(bases) >= 2, "multi-stage"
    for image in bases:
        name, _, tag = image.partition(":")
        assert re.match(r"^\d+\.\d+\.\d+-", tag), f"{image}: pin the base image to a full version tag"
    copy_from = [args for op, args in steps if op == "COPY" and args.startswith("--from=ghcr.io/astral-sh/uv:")]
    uv_version = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert copy_from and all(f"uv:{uv_version} " in a for a in copy_from), "uv as pinned in the Makefile"
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "uv sync --frozen" in runs and ("--extra gpu" in runs) == (flavour == "gpu")
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    (user,) = [args for op, args in final if op == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["daskcluster"]') in final
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["daskcluster"] == "daskcluster.cli:main"
    for op, args in steps:  # what the build context must provide
        if op == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), src


def test_dockerignore_keeps_what_the_images_copy():
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!uv.lock", "!README.md", "!daskcluster/"} <= set(rules)


# ---------------------------------------------------------------- the submitter


def test_render_and_days():
    template = yaml.safe_load((K8S / "base" / "daskjob.yaml").read_text())
    job = dk8s.render_daskjob(template, "2026-03-01")
    assert job["metadata"]["labels"]["daskcluster.io/day"] == "2026-03-01"
    with pytest.raises(ValueError):
        dk8s.render_daskjob(template, "2026-3-1x")
    import datetime as dt

    assert dk8s.days_ago(1, dt.date(2026, 3, 1)) == "2026-02-28"


class FakeApi:
    """The API server as the submitter sees it: create, then the operator moves the DaskJob along."""

    def __init__(self, states: list[str], exists: bool = False):
        self.states, self.calls, self.exists = list(states), [], exists

    def request(self, method, path, body=None):
        self.calls.append((method, path))
        if method == "POST":
            return (409, {"message": "exists"}) if self.exists else (201, body)
        return 200, {"status": {"jobStatus": self.states.pop(0)}}


@pytest.mark.parametrize("exists", [False, True])
def test_submit_and_wait(exists):
    template = yaml.safe_load((K8S / "base" / "daskjob.yaml").read_text())
    api = FakeApi(["JobCreated", "ClusterCreated", "Running", "Successful"], exists=exists)
    name = dk8s.submit_daskjob(api, "daskcluster", dk8s.render_daskjob(template, DAY))
    assert dk8s.wait_daskjob(api, "daskcluster", name, poll_s=0, sleep=lambda s: None) == "Successful"
    assert api.calls[0] == ("POST", "/apis/kubernetes.dask.org/v1/namespaces/daskcluster/daskjobs")
    assert api.calls[-1] == ("GET", f"/apis/kubernetes.dask.org/v1/namespaces/daskcluster/daskjobs/{name}")
    failed = FakeApi(["Running", "Failed"])
    assert dk8s.wait_daskjob(failed, "daskcluster", name, poll_s=0, sleep=lambda s: None) == "Failed"


def test_kube_api_speaks_http(tmp_path):
    """KubeApi against a local HTTP server: bearer token re-read per call, JSON both ways, errors as statuses."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.command, self.path, self.headers["Authorization"], body["metadata"]["name"]))
            self._reply(409 if len(seen) > 1 else 201, body)

        def do_GET(self):
            seen.append((self.command, self.path, self.headers["Authorization"], None))
            self._reply(200, {"status": {"jobStatus": "Successful"}})

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        token = tmp_path / "token"
        token.write_text("t1\n")
        api = dk8s.KubeApi(f"http://127.0.0.1:{server.server_port}", token)
        job = dk8s.render_daskjob(yaml.safe_load((K8S / "base" / "daskjob.yaml").read_text()), DAY)
        assert dk8s.submit_daskjob(api, "ns", job) == f"daskcluster-{DAY}"
        token.write_text("t2\n")
        assert dk8s.submit_daskjob(api, "ns", job) == f"daskcluster-{DAY}"  # 409: already there
        assert dk8s.wait_daskjob(api, "ns", f"daskcluster-{DAY}", poll_s=0) == "Successful"
    finally:
        server.shutdown()
    path = "/apis/kubernetes.dask.org/v1/namespaces/ns/daskjobs"
    assert seen == [
        ("POST", path, "Bearer t1", f"daskcluster-{DAY}"),
        ("POST", path, "Bearer t2", f"daskcluster-{DAY}"),
        ("GET", f"{path}/daskcluster-{DAY}", "Bearer t2", None),
    ]


@pytest.mark.slow
@pytest.mark.distributed
def test_cpu_daskjob_commands_run_a_day_as_local_processes(tmp_path):
    """The base DaskJob's scheduler, workers and runner, each started with its container's command and arguments
    (volumes mapped to local folders, ports to free ones, $(VAR)s to what the operator sets): the day commits."""
    from daskcluster.deploy.connect import free_port
    from daskcluster.eval.synth import SynthSpec, write_dataset

    objects = build(K8S / "base")
    job = dk8s.render_daskjob(yaml.safe_load(config_map(objects, "daskcluster-daskjob")["data"]["daskjob.yaml"]), DAY)
    (day_dir,) = write_dataset(SynthSpec(days=1, faces_per_day=600, identities=100, dim=64, seed=2), tmp_path / "in")
    (tmp_path / "in" / f"day={DAY}").symlink_to(day_dir)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "daskcluster.yaml").write_text(
        config_map(objects, "daskcluster-config")["data"]["daskcluster.yaml"]
    )
    port = free_port(18786)
    paths = {
        "/data/gallery": tmp_path / "gallery",
        "/data/input": tmp_path / "in",
        "/etc/daskcluster": tmp_path / "etc",
        "/scratch": tmp_path / "scratch",
    }
    env = {"DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{port}", "DASK_WORKER_NAME": "w"}

    def argv(container: dict, name: str) -> list[str]:
        out = []
        for a in [*container["command"], *container["args"]]:
            a = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)] if m.group(1) != "DASK_WORKER_NAME" else name, a)
            for mount, local in paths.items():
                a = a.replace(mount, str(local)) if a.startswith(mount) else a
            out.append({"8786": str(port), ":8787": ":0", ":8788": ":0"}.get(a, a))
        bin_dir = Path(sys.executable).parent
        return [str(bin_dir / out[0]), *out[1:]]

    cluster = job["spec"]["cluster"]["spec"]
    (sched,), (worker,), (runner,) = (
        cluster["scheduler"]["spec"]["containers"],
        cluster["worker"]["spec"]["containers"],
        job["spec"]["job"]["spec"]["containers"],
    )
    procs = [subprocess.Popen(argv(sched, "s"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs += [
            subprocess.Popen(argv(worker, f"w{i}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(cluster["worker"]["replicas"])
        ]
        out = subprocess.run(argv(runner, "r"), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"day {DAY} committed" in " ".join(out.stderr.split())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_every_daskjob_container_takes_the_object_store_secret(daskjob):
    """A gallery at s3://...: the runner, scheduler and workers all get the keys and endpoint from one Secret."""
    spec = daskjob["spec"]
    pods = [
        spec["job"]["spec"],
        spec["cluster"]["spec"]["scheduler"]["spec"],
        spec["cluster"]["spec"]["worker"]["spec"],
    ]
    containers = [c for pod in pods for c in pod["containers"]]
    assert len(containers) == 3
    for c in containers:
        assert {"secretRef": {"name": "daskcluster-object-store", "optional": True}} in c["envFrom"], c["name"]
