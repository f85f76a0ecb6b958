"""launch/k8s: the Kustomize base and overlays render to objects that the Kubernetes
OpenAPI schemas accept (kubernetes-validate, offline, strict), hang together (names,
ports, probes, shard files, GPUs), and the Dockerfile builds a non-root image with no
checkpoint in it. No cluster and no Docker engine are needed.

The rendering is done here by a small Python Kustomize that knows only what these
kustomizations use (resources, labels, configMapGenerator with its content hash,
images, replicas, JSON 6902 patches) and refuses anything else. No Python package on
PyPI renders Kustomize; when `kubectl` is on PATH (it carries Kustomize), its output is
compared with ours object by object, hash suffixes included.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sam2long_stream.supervisor import LaunchConfig, parse_launch
from tests.conftest import REPO_ROOT

K8S = REPO_ROOT / "launch" / "k8s"
TREES = ["base", "overlays/one-gpu-node", "overlays/many-gpu-nodes"]
# The oldest Kubernetes the manifests are for (the pod-index label is 1.28) and the
# newest the validator ships schemas for.
K8S_VERSIONS = ["1.28", kubernetes_validate.latest_version()]
CONFIG_DIR = "/etc/sam2long-stream"


# --------------------------------------------------------------------------- kustomize


def _kustomize_hash(cm: dict[str, Any]) -> str:
    """Kustomize's ConfigMap name suffix: sha256 of Go's json.Marshal of
    {data, kind, name}, first 10 hex digits with 0 1 3 a e swapped for g h k m t. The
    name is hashed as "": Kustomize v5 looks up "metadata/name" as one key, finds
    nothing, and so only the data (and kind) decide the suffix."""
    doc = {"data": cm.get("data", {}), "kind": "ConfigMap", "name": ""}
    if cm.get("binaryData"):
        doc["binaryData"] = cm["binaryData"]
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, esc)  # Go escapes these for HTML
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """RFC 6902 add / replace / remove: the ops the overlays use."""
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        kind = op["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                node[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del node[index]
            else:
                raise AssertionError(f"unsupported patch op {kind}")
        elif kind in ("add", "replace"):
            assert kind == "add" or last in node, f"replace of a missing {op['path']}"
            node[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del node[last]
        else:
            raise AssertionError(f"unsupported patch op {kind}")


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    want = {"kind": obj["kind"], "name": obj["metadata"]["name"], "group": group}
    want["version"] = version
    return all(want[k] == v for k, v in target.items())


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    return [spec["template"]["spec"]] if "template" in spec else []


def _load(tree: Path) -> list[dict[str, Any]]:
    """One kustomization, its bases first; generated ConfigMaps are marked, unhashed."""
    k = yaml.safe_load((tree / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "labels", "configMapGenerator", "images"}
    unsupported = set(k) - known - {"replicas", "patches"}
    assert not unsupported, f"{tree}: this test's renderer lacks {unsupported}"
    objs: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        path = (tree / entry).resolve()
        if path.is_dir():
            objs += _load(path)
        else:
            objs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for gen in k.get("configMapGenerator", []):
        data = {Path(f).name: (tree / f).read_text() for f in gen.get("files", [])}
        behavior = gen.get("behavior", "create")
        found = [o for o in objs if o.get("_generated") and o["metadata"]["name"] == gen["name"]]
        if behavior == "create":
            assert not found, f"{tree}: {gen['name']} generated twice"
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": gen["name"]},
                    "data": data,
                    "_generated": True,
                }
            )
        else:
            assert found, f"{tree}: behavior {behavior} without a base {gen['name']}"
            if behavior == "replace":
                found[0]["data"] = data
            else:
                assert behavior == "merge", behavior
                found[0]["data"].update(data)
    for patch in k.get("patches", []):
        ops = yaml.safe_load(patch["patch"])
        hits = [o for o in objs if _matches(o, patch["target"])]
        assert hits, f"{tree}: patch target {patch['target']} matches nothing"
        for obj in hits:
            _json_patch(obj, ops)
    for image in k.get("images", []):
        for obj in objs:
            for pod in _pod_specs(obj):
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    name = re.split(r"[:@]", c["image"], maxsplit=1)[0]
                    if name == image["name"]:
                        c["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    for rep in k.get("replicas", []):
        hits = [
            o
            for o in objs
            if o["metadata"]["name"] == rep["name"] and o["kind"] in ("Deployment", "StatefulSet")
        ]
        assert hits, f"{tree}: replicas for a missing {rep['name']}"
        for obj in hits:
            obj["spec"]["replicas"] = rep["count"]
    for label in k.get("labels", []):
        assert not label.get("includeSelectors") and not label.get("includeTemplates")
        for obj in objs:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
    return objs


def render(tree: Path) -> list[dict[str, Any]]:
    """`kustomize build tree`, for what these kustomizations use."""
    objs = _load(tree)
    renames = {}
    for obj in objs:
        if obj.pop("_generated", False):
            name = obj["metadata"]["name"]
            renames[name] = obj["metadata"]["name"] = f"{name}-{_kustomize_hash(obj)}"
    for obj in objs:
        for pod in _pod_specs(obj):
            for vol in pod.get("volumes", []):
                if "configMap" in vol:
                    vol["configMap"]["name"] = renames.get(
                        vol["configMap"]["name"], vol["configMap"]["name"]
                    )
    return objs


def by_key(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    assert len(out) == len(objs), "two objects with the same kind and name"
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    return {tree: by_key(render(K8S / tree)) for tree in TREES}


def one(objs: dict[tuple[str, str], dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for (k, _), o in objs.items() if k == kind]


def launch_files(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, LaunchConfig]:
    (cm,) = one(objs, "ConfigMap")
    return {
        name: parse_launch(tomllib.loads(text), name)  # the launcher's own strict check
        for name, text in cm["data"].items()
    }


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_passes_the_kubernetes_schema(
    rendered: dict[str, Any], tree: str, version: str
) -> None:
    objs = rendered[tree]
    kinds = {k for k, _ in objs}
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap"} <= kinds
    assert {"PersistentVolumeClaim", "NetworkPolicy"} <= kinds
    for (kind, name), obj in objs.items():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            pytest.fail(f"{tree}: {kind}/{name} at {where}: {e.message}", pytrace=False)


def test_the_validator_really_rejects_mistakes(rendered: dict[str, Any]) -> None:
    """Guard against a validator that accepts anything (e.g. a missing schema)."""
    (sts,) = one(rendered["base"], "StatefulSet")
    bad = copy.deepcopy(sts)
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)
    bad = copy.deepcopy(sts)
    bad["spec"]["replicas"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) absent")
@pytest.mark.parametrize("tree", TREES)
def test_our_rendering_equals_kubectl_kustomize(rendered: dict[str, Any], tree: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / tree)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    theirs = by_key([d for d in yaml.safe_load_all(out.stdout) if d])
    assert theirs.keys() == rendered[tree].keys()
    for key, obj in theirs.items():
        assert obj == rendered[tree][key], key


@pytest.mark.parametrize("tree", TREES)
def test_shards_gpus_ports_and_probes_hang_together(rendered: dict[str, Any], tree: str) -> None:
    objs = rendered[tree]
    (sts,) = one(objs, "StatefulSet")
    (cm,) = one(objs, "ConfigMap")
    files = launch_files(objs)
    replicas = sts["spec"]["replicas"]
    shards = sorted(n for n in files if n.startswith("shard-"))
    assert shards == [f"shard-{i}.toml" for i in range(replicas)], "one launch file per pod"
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    # Pod N reads shard-N.toml: $(SHARD) is the pod-index label.
    assert c["args"][:2] == ["launch", f"{CONFIG_DIR}/shard-$(SHARD).toml"]
    (shard_env,) = [e for e in c["env"] if e["name"] == "SHARD"]
    field = shard_env["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    # One GPU per pod, asked for where the device plugin looks (limits), and every
    # stream of a shard on that GPU.
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert "memory" in c["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts_name(mounts, CONFIG_DIR)]["configMap"]["name"] == cm["metadata"]["name"]
    ckpt_mount = mounts["checkpoints"]
    assert ckpt_mount["readOnly"] and "persistentVolumeClaim" in volumes["checkpoints"]
    claim = volumes["checkpoints"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in objs
    stream_ids: list[str] = []
    for name in shards:
        cfg = files[name]
        assert cfg.options["http"] == f"0.0.0.0:{ports['http']}"
        assert cfg.options["stop_timeout_s"] < pod["terminationGracePeriodSeconds"]
        assert cfg.proxy is None, "the fan-in is the one proxy; a shard pod needs none"
        # One GPU per pod, one multi-stream node process per GPU: one model for all.
        (shard,) = cfg.shards
        assert shard.device == "cuda:0"
        assert shard.pub == f"tcp://0.0.0.0:{ports['pub']}"
        assert shard.control == f"tcp://0.0.0.0:{ports['control']}"
        assert shard.http == f"0.0.0.0:{ports['node-http']}"
        assert shard.allow_remote, "the node binds the pod's address"
        assert str(shard.values["checkpoint"]).startswith(ckpt_mount["mountPath"] + "/")
        assert shard.shard_id == name.removesuffix(".toml")
        stream_ids += [s.stream_id for s in shard.streams]
    assert len(stream_ids) == len(set(stream_ids)), "stream ids must be unique over shards"
    # Probes: the launcher's own endpoints on its http port.
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The headless Service names each pod, reaches not-ready pods, and carries the ports.
    shards_svc = objs[("Service", sts["spec"]["serviceName"])]["spec"]
    assert shards_svc["clusterIP"] == "None" and shards_svc["publishNotReadyAddresses"]
    assert shards_svc["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in shards_svc["ports"]} <= ports.keys()
    # The fan-in connects to exactly the shard pods' proxies.
    fanin = files["fanin.toml"]
    assert not fanin.streams and fanin.proxy is not None
    svc_name = sts["spec"]["serviceName"]
    name = sts["metadata"]["name"]
    assert list(fanin.proxy.upstreams) == [
        f"tcp://{name}-{i}.{svc_name}:{ports['pub']}" for i in range(replicas)
    ]
    # The one subscriber address: sam2long-pub -> the fan-in's proxy port.
    (dep,) = one(objs, "Deployment")
    pub = objs[("Service", "sam2long-pub")]["spec"]
    assert pub["selector"] == dep["spec"]["selector"]["matchLabels"]
    (fc,) = dep["spec"]["template"]["spec"]["containers"]
    fports = {p["name"]: p["containerPort"] for p in fc["ports"]}
    assert pub["ports"][0]["targetPort"] == "pub"
    assert fanin.proxy.bind == f"tcp://0.0.0.0:{fports['pub']}"
    assert fc["args"][:2] == ["launch", f"{CONFIG_DIR}/fanin.toml"]
    assert "nvidia.com/gpu" not in json.dumps(fc["resources"])


@pytest.mark.parametrize("tree", TREES)
def test_pods_run_as_non_root_with_a_read_only_root(rendered: dict[str, Any], tree: str) -> None:
    for kind in ("StatefulSet", "Deployment"):
        for obj in one(rendered[tree], kind):
            pod = obj["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] != 0
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
                assert sc["capabilities"]["drop"] == ["ALL"]
                # The root is read-only: /tmp (HOME, the launcher's run dir) is a volume.
                assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_overlays_differ_where_they_should(rendered: dict[str, Any]) -> None:
    one_gpu, many = rendered["overlays/one-gpu-node"], rendered["overlays/many-gpu-nodes"]
    assert one(one_gpu, "StatefulSet")[0]["spec"]["replicas"] == 1
    assert one(many, "StatefulSet")[0]["spec"]["replicas"] == 3
    assert len(launch_files(one_gpu)["shard-0.toml"].streams) == 4
    assert ("PodDisruptionBudget", "sam2long") in many
    affinity = one(many, "StatefulSet")[0]["spec"]["template"]["spec"]["affinity"]
    assert "podAntiAffinity" in affinity
    for objs in (one_gpu, many):
        for kind in ("StatefulSet", "Deployment"):
            image = one(objs, kind)[0]["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image == "registry.example.com/vision/sam2long-stream:0.1.0"
    # Different launch files, different ConfigMap names: an edit rolls the pods.
    names = {one(rendered[t], "ConfigMap")[0]["metadata"]["name"] for t in TREES}
    assert len(names) == 3 and all(n.startswith("sam2long-launch-") for n in names)


def mounts_name(mounts: dict[str, dict[str, Any]], path: str) -> str:
    (name,) = [n for n, m in mounts.items() if m["mountPath"] == path]
    return name


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued RUN
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def test_dockerfile_builds_a_non_root_image_without_checkpoints() -> None:
    text = (K8S / "Dockerfile").read_text()
    ins = dockerfile_instructions(text)
    words = [w for w, _ in ins]
    known = {"ARG", "FROM", "RUN", "ENV", "COPY", "USER", "WORKDIR", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert set(words) <= known, set(words) - known
    args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 2, "a build stage and a runtime stage"
    for base in froms:
        image = base.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), image
        assert image.startswith(("nvidia/cuda:", "pytorch/pytorch:")), image
    runtime = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as root"
    (entry,) = [a for w, a in runtime if w == "ENTRYPOINT"]
    assert json.loads(entry)[-1] == "sam2long-stream", "exec form, the package's CLI"
    runs = " ".join(a for w, a in ins if w == "RUN")
    assert re.search(r"pip install --no-build-isolation --no-deps \"?sam2==1\.1\.0", runs)
    assert "SAM2_BUILD_CUDA=0" in runs and "torch==${TORCH_VERSION}" in runs
    # Nothing that looks like weights is copied in; what is copied exists.
    copies = [a for w, a in ins if w in ("COPY", "ADD")]
    assert "ADD" not in words
    for a in copies:
        assert not re.search(r"\.(pt|pth|ckpt|safetensors)\b|checkpoint|/models", a), a
        if "--from=" not in a:
            *sources, _dest = a.split()
            for src in sources:
                assert (REPO_ROOT / src).exists(), src
    # The build context lets only the sources in (BuildKit's per-Dockerfile ignore file).
    ignore = (K8S / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*" and "**/*.pt" in rules and "**/*.pth" in rules
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {src.rstrip("/") for a in copies if "--from=" not in a for src in a.split()[:-1]}
    assert copied <= allowed, copied - allowed
