"""A small kustomize, for the subset that ``k8s/`` uses, so the tests can render the overlays without kubectl.

Supported (the semantics of ``kubectl kustomize``, kustomize v5): ``resources`` (YAML files and kustomization
directories), ``namespace``, ``labels`` (metadata only: ``includeSelectors: false``), ``configMapGenerator``
(``files``, ``literals``, ``behavior: create|replace|merge``) with ``generatorOptions.disableNameSuffixHash: true``,
and ``patches`` with a strategic-merge patch (lists merged by their key) or a JSON 6902 patch with a target.
Anything else is an error, so that a kustomization using more fails loudly instead of rendering differently.
When kubectl is installed, tests/deploy/test_k8s.py checks this renderer against ``kubectl kustomize``.

    python -m tests.deploy.kustomize k8s/gpu    # print the rendered overlay
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "patches",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
}
# strategic merge keys of the built-in list fields we patch (k8s.io/api: patchMergeKey)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _id(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _config_map(gen: dict, root: Path) -> dict:
    data = {}
    for item in gen.get("files", []):
        key, _, rel = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
        path = (root / rel).resolve()
        if root.resolve() not in path.parents:
            raise ValueError(f"{root}: file {rel} is outside the kustomization root (kustomize refuses it)")
        data[key] = path.read_text()
    for item in gen.get("literals", []):
        key, _, value = item.partition("=")
        data[key] = value
    meta = {"name": gen["name"], **({"namespace": gen["namespace"]} if gen.get("namespace") else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _generate(kust: dict, root: Path, objects: list[dict]) -> None:
    gens = kust.get("configMapGenerator", [])
    if gens and not kust.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise NotImplementedError(f"{root}: only configMapGenerator with disableNameSuffixHash: true is supported")
    for gen in gens:
        new = _config_map(gen, root)
        behavior = gen.get("behavior", "create")
        existing = [o for o in objects if _id(o) == ("ConfigMap", gen["name"])]
        if behavior == "create":
            if existing:
                raise ValueError(f"{root}: ConfigMap {gen['name']} already exists (use behavior: replace/merge)")
            objects.append(new)
        elif behavior in ("replace", "merge"):
            if not existing:
                raise ValueError(f"{root}: no ConfigMap {gen['name']} to {behavior}")
            old = existing[0]
            old["data"] = new["data"] if behavior == "replace" else {**old.get("data", {}), **new["data"]}
        else:
            raise ValueError(f"{root}: unknown behavior {behavior!r}")


def strategic_merge(base: Any, patch: Any) -> Any:
    """Strategic merge patch of built-in objects: maps merge, null deletes, keyed lists merge by key."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and MERGE_KEYS.get(key) and isinstance(out.get(key), list):
            merge_key, merged = MERGE_KEYS[key], [copy.deepcopy(v) for v in out[key]]
            for item in value:
                match = [i for i, old in enumerate(merged) if old.get(merge_key) == item.get(merge_key)]
                if match:
                    merged[match[0]] = strategic_merge(merged[match[0]], item)
                else:
                    merged.append(copy.deepcopy(item))
            out[key] = merged
        else:
            out[key] = strategic_merge(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json6902(obj: dict, ops: list[dict]) -> dict:
    """JSON patch (RFC 6902) ops add, replace, remove."""
    obj = copy.deepcopy(obj)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif op["op"] in ("add", "replace"):
            if isinstance(node, list):
                idx = len(node) if last == "-" else int(last)
                if op["op"] == "add":
                    node.insert(idx, op["value"])
                else:
                    node[idx] = op["value"]
            else:
                node[last] = op["value"]
        else:
            raise NotImplementedError(f"JSON patch op {op['op']!r}")
    return obj


def _matches(obj: dict, target: dict) -> bool:
    return all(
        obj.get(k) == v if k == "kind" else obj["metadata"].get(k) == v
        for k, v in target.items()
        if k in ("kind", "name", "namespace")
    )


def _apply_patches(kust: dict, root: Path, objects: list[dict]) -> list[dict]:
    for spec in kust.get("patches", []):
        docs = load_yaml_docs(root / spec["path"]) if "path" in spec else [yaml.safe_load(spec["patch"])]
        if isinstance(docs[0], list):  # JSON 6902
            if "target" not in spec:
                raise ValueError(f"{root}: a JSON 6902 patch needs a target")
            objects = [json6902(o, docs[0]) if _matches(o, spec["target"]) else o for o in objects]
            continue
        for doc in docs:
            target = spec.get("target") or {"kind": doc["kind"], "name": doc["metadata"]["name"]}
            hits = [i for i, o in enumerate(objects) if _matches(o, target)]
            if not hits:
                raise ValueError(f"{root}: patch target {target} matches nothing")
            for i in hits:
                objects[i] = strategic_merge(objects[i], doc)
    return objects


def _transform(kust: dict, objects: list[dict]) -> None:
    namespace = kust.get("namespace")
    for obj in objects:
        meta = obj["metadata"]
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = namespace
        for group in kust.get("labels", []):
            if group.get("includeSelectors") or group.get("includeTemplates"):
                raise NotImplementedError("labels with includeSelectors/includeTemplates")
            meta["labels"] = {**meta.get("labels", {}), **group["pairs"]}


def build(root: str | Path) -> list[dict]:
    """The rendered objects of the kustomization in ``root``."""
    root = Path(root)
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(kust) - KNOWN_KEYS
    if unknown:
        raise NotImplementedError(f"{root}: kustomization fields not supported by tests/deploy/kustomize.py: {unknown}")
    objects: list[dict] = []
    for res in kust.get("resources", []):
        path = root / res
        objects.extend(build(path) if path.is_dir() else load_yaml_docs(path))
    _generate(kust, root, objects)
    objects = _apply_patches(kust, root, objects)
    _transform(kust, objects)
    return objects


if __name__ == "__main__":
    print(yaml.safe_dump_all(build(sys.argv[1]), sort_keys=False), end="")
