"""The Helm chart (helm/omniserve), rendered offline with Helm's own Go SDK (helm-python-sdk).

Every rendered RayService is checked the way the cluster would check it: against the KubeRay
v1.7.0 CRD schema (../shared/schemas), its serveConfigV2 with Ray Serve's ServeDeploySchema and
its args with omniserve's AppConfig, its pod templates and Service with kubernetes-validate, its
worker groups through the Ray autoscaler's own reading of a RayCluster spec, and its replicas by
packing them onto the worker pods the groups can create. The head pod's ServiceAccount, Role and
RoleBinding (list and watch of pods, for the admission service's pod-based start ETAs) are
validated the same way and evaluated with RBAC's rule matching. The default values must build the same
application graph as configs/gpu-24g.yaml, examples/values-multinode.yaml the same as
configs/gpu-multinode.yaml. The commands in the README's cluster guide are run against the chart.

The helpers here are shared with tests/test_kustomize.py.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "omniserve"
MULTINODE_VALUES = CHART / "examples" / "values-multinode.yaml"
DOCS = REPO / "README.md"  # its "Running on a GPU cluster" section
SHARED = REPO.parent / "shared"
CRD_DIR = SHARED / "schemas" / "kuberay-v1.7.0"
KUBE_VERSION = "1.32.0"
IMPORT_PATH = "deployments.app:build_app"

# ------------------------------------------------------------------------------------------
# Helpers (also used by tests/test_kustomize.py)
# ------------------------------------------------------------------------------------------


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def profile_serve_config(name: str) -> dict:
    """A profile file of configs/ as a dict."""
    return _yaml_load((REPO / "configs" / name).read_text())


def app_of(serve_config: dict) -> dict:
    """The one application of a Serve config built by deployments.app:build_app."""
    apps = [a for a in serve_config["applications"] if a.get("import_path") == IMPORT_PATH]
    assert len(apps) == 1, f"expected one application with import_path {IMPORT_PATH}: {serve_config['applications']}"
    return apps[0]


def deep_merge(base: dict, override: dict) -> dict:
    """Helm's coalescing of values: maps merge, anything else replaces, and a null deletes a key
    the base has (a null under a key the base lacks is kept)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None and key in out:
            del out[key]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what `kubectl patch --type merge` applies)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(doc: Any, ops: list[dict]) -> Any:
    """RFC 6902 JSON patch, the `replace` and `add` operations (`kubectl patch --type json`)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] in ("replace", "add"), op
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            if op["op"] == "replace":
                parent[int(last)] = op["value"]
            else:
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
        else:
            if op["op"] == "replace":
                assert last in parent, f"replace of missing {op['path']}"
            parent[last] = op["value"]
    return doc


@functools.cache
def crd_validator(kind: str):
    """jsonschema validator for a KubeRay v1.7.0 CRD (kind: rayservices or rayclusters)."""
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema validates rendered objects against the KubeRay CRDs"
    )
    if not CRD_DIR.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {CRD_DIR} (shared/ is absent)")
    crd = _yaml_load((CRD_DIR / f"ray.io_{kind}.yaml").read_text())
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1"
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


def assert_crd_valid(obj: dict, kind: str) -> None:
    errors = sorted(crd_validator(kind).iter_errors(obj), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


def assert_k8s_valid(obj: dict) -> None:
    """Validate a core Kubernetes object (strict: unknown fields are errors)."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate validates core objects offline"
    )
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def ray_groups(rs: dict) -> list[tuple[str, dict]]:
    """(name, group spec) of the head and each worker group of a RayService."""
    rc = rs["spec"]["rayClusterConfig"]
    return [("head", rc["headGroupSpec"])] + [(g["groupName"], g) for g in rc.get("workerGroupSpecs") or []]


def autoscaler_node_types(rs: dict) -> dict:
    """The Ray autoscaler's view of the cluster (node types with resources and worker bounds),
    derived by Ray's own KubeRay code from the RayCluster spec the RayService creates."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    cluster = {
        "metadata": {"name": rs["metadata"]["name"], "namespace": "omniserve"},
        "spec": rs["spec"]["rayClusterConfig"],
    }
    return _derive_autoscaling_config_from_ray_cr(cluster)["available_node_types"]


def code_options(args: dict) -> dict[str, dict]:
    """{Serve deployment name: options} as build_app passes them to Deployment.options: a
    model's autoscaling_config in the session-policy form (session_autoscaling), the ingress's
    plain."""
    from deployments.config import DEFAULT_DEPLOYMENT_NAMES, AppConfig
    from deployments.scaling.options import session_autoscaling

    config = AppConfig.model_validate(args)
    options = []
    for m in config.models:
        opts = m.deployment.serve_options(DEFAULT_DEPLOYMENT_NAMES[m.role], m.role)
        if "autoscaling_config" in opts:
            opts["autoscaling_config"] = session_autoscaling(
                opts["autoscaling_config"], count_waiting=config.admission.scale_on_queue
            )
        options.append(opts)
    options.append(config.ingress.deployment.serve_options("Ingress"))
    return {o["name"]: o for o in options}


def expected_entry_autoscaling(plain: dict, count_waiting: bool, model: bool) -> dict:
    """What a `deployments` entry must carry for a deployment configured with the plain
    autoscaling_config `plain`: a model's as session_autoscaling makes it (what build_app hands
    Serve; a config with its own `policy` passes through), the ingress's unchanged."""
    from deployments.scaling.options import session_autoscaling

    return session_autoscaling(plain, count_waiting=count_waiting) if model else copy.deepcopy(plain)


def floor_of(autoscaling_config: dict) -> int:
    """The replicas a deployment keeps at least: the session policy's floor
    (policy_kwargs.min_replicas; Serve's own min_replicas is 0 then), else Serve's min_replicas."""
    from deployments.scaling.options import POLICY_PATH

    policy = autoscaling_config.get("policy") or {}
    if policy.get("policy_function") == POLICY_PATH:
        return int(policy["policy_kwargs"]["min_replicas"])
    return int(autoscaling_config.get("min_replicas", 1))


def check_autoscaling_entries(app: dict) -> None:
    """Every `deployments` entry's autoscaling_config is one Ray Serve's AutoscalingConfig
    accepts, and a session-policy entry names an importable policy its kwargs construct."""
    from ray.serve.config import AutoscalingConfig

    from deployments.scaling.options import POLICY_PATH
    from deployments.scaling.policy import SessionAutoscalingPolicy

    for entry in app.get("deployments") or []:
        auto = entry.get("autoscaling_config")
        if not auto:
            continue
        AutoscalingConfig(**auto)
        policy = auto.get("policy") or {}
        if policy.get("policy_function") == POLICY_PATH:
            assert auto["min_replicas"] == 0 and auto["downscale_to_zero_delay_s"] == 0, entry
            SessionAutoscalingPolicy(**policy["policy_kwargs"])


def serve_options(app: dict) -> dict[str, dict]:
    """The options Ray Serve runs each deployment with: the code's, overridden by the
    application's `deployments` entries (a null autoscaling_config switches autoscaling off)."""
    out = code_options(app["args"])
    for entry in app.get("deployments") or []:
        assert entry["name"] in out, f"Serve rejects an entry for unknown deployment {entry['name']}"
        opts = out[entry["name"]] = {**out[entry["name"]], **{k: v for k, v in entry.items() if k != "name"}}
        if opts.get("autoscaling_config") is None:
            opts.pop("autoscaling_config", None)
        elif "autoscaling_config" in entry:
            opts.pop("num_replicas", None)
    return out


def replica_demands(app: dict) -> list[dict]:
    """Each Serve deployment of the application: resources of one replica and replica bounds, as
    build_app computes them (DeploymentOptions.serve_options), with the Serve config's
    `deployments` overrides applied on top (what Serve does). The lower bound of a deployment the
    session policy drives is the policy's floor."""
    out = []
    for opts in serve_options(app).values():
        auto = opts.get("autoscaling_config")
        if auto:  # Serve autoscales whenever an autoscaling_config is left
            low, high = floor_of(auto), int(auto.get("max_replicas", 1))
        else:
            low = high = int(opts["num_replicas"])
        actor = opts["ray_actor_options"]
        need = {"CPU": float(actor.get("num_cpus", 1)), "GPU": float(actor.get("num_gpus", 0))}
        need.update({k: float(v) for k, v in (actor.get("resources") or {}).items()})
        out.append({"name": opts["name"], "min": low, "max": high, "need": need})
    return out


def pack(demands: list[dict], node_types: dict, which: str) -> dict[str, int]:
    """Place every replica (`which`: "min" or "max" replica counts) on nodes the groups can
    create (first-fit decreasing, GPU-less replicas preferring GPU-less groups, as Ray avoids
    GPU nodes for them). Returns the number of nodes used per group; fails when a replica fits
    nowhere, i.e. the worker groups cannot hold the GPU/CPU fractions placed on them."""
    items = [(d["name"], d["need"]) for d in demands for _ in range(d[which])]
    items.sort(key=lambda item: (item[1].get("GPU", 0), item[1].get("CPU", 0)), reverse=True)
    open_nodes: list[dict] = []
    used = {name: 0 for name in node_types}
    limit = {name: (1 if name == "headgroup" else t["max_workers"]) for name, t in node_types.items()}
    for name, need in items:

        def fits(free: dict, need: dict = need) -> bool:
            return all(free.get(k, 0) + 1e-9 >= v for k, v in need.items() if v > 0)

        def order(group: str, need: dict = need) -> tuple:
            has_gpu = node_types[group]["resources"].get("GPU", 0) > 0
            return (has_gpu != (need.get("GPU", 0) > 0), group)

        for node in sorted(open_nodes, key=lambda n: order(n["group"])):
            if fits(node["free"]):
                break
        else:
            for group in sorted(node_types, key=order):
                if used[group] < limit[group] and fits(node_types[group]["resources"]):
                    node = {"group": group, "free": dict(node_types[group]["resources"])}
                    open_nodes.append(node)
                    used[group] += 1
                    break
            else:
                raise AssertionError(
                    f"{which} replicas: no node left for a {name} replica needing {need}; "
                    f"groups: { {g: (t['resources'], limit[g]) for g, t in node_types.items()} }, used {used}"
                )
        for k, v in need.items():
            node["free"][k] = node["free"].get(k, 0) - v
    return used


def check_rayservice(rs: dict, pack_max: bool = True) -> tuple[dict, dict]:
    """Validate a rendered RayService as KubeRay, Ray Serve and omniserve would read it; the
    worker groups must hold every replica at min_replicas, and at max_replicas unless pack_max
    is false (a maximum beyond the groups only caps autoscaling). Returns (serve config,
    omniserve application)."""
    import ray
    from ray.serve.schema import ServeDeploySchema

    from deployments.config import AppConfig

    assert rs["apiVersion"] == "ray.io/v1" and rs["kind"] == "RayService"
    assert_crd_valid(rs, "rayservices")
    name = rs["metadata"]["name"]
    assert len(name) <= 47 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name

    # serveConfigV2: a Serve config file whose application is omniserve's build_app(args).
    serve_config = _yaml_load(rs["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(serve_config)
    app = app_of(serve_config)
    assert [a.import_path for a in schema.applications].count(IMPORT_PATH) == 1
    AppConfig.model_validate(app["args"])
    serve_options(app)  # every `deployments` entry names a deployment build_app creates
    check_autoscaling_entries(app)
    assert serve_config["http_options"]["host"] == "0.0.0.0"

    rc = rs["spec"]["rayClusterConfig"]
    assert rc["rayVersion"] == ray.__version__
    if (rc.get("authOptions") or {}).get("mode") == "token":
        assert tuple(map(int, rc["rayVersion"].split("."))) >= (2, 52, 0)
    head = rc["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert ports["serve"] == serve_config["http_options"]["port"], "KubeRay's serve port must be Serve's HTTP port"
    for group, spec in ray_groups(rs):
        params = spec.get("rayStartParams") or {}
        assert all(isinstance(v, str) for v in params.values()), (group, params)
        assert "labels" not in params, "KubeRay rejects rayStartParams labels"
        pod = spec["template"]
        assert pod["spec"].get("restartPolicy") in (None, "Never")
        assert_k8s_valid(
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"{name}-{group}"}, "template": pod}
        )
    if rc.get("workerGroupSpecs"):
        for g in rc["workerGroupSpecs"]:
            assert 0 <= g["minReplicas"] <= g["maxReplicas"], g["groupName"]

    service = rs["spec"].get("serveService")
    if service is not None:
        assert_k8s_valid({"apiVersion": "v1", "kind": "Service", **service})
        assert [p["name"] for p in service["spec"]["ports"]] == ["serve"]

    # The worker groups hold every replica, at min_replicas and at max_replicas.
    node_types = autoscaler_node_types(rs)
    demands = replica_demands(app)
    pack(demands, node_types, "min")
    if pack_max:
        pack(demands, node_types, "max")
    return serve_config, app


def build_graph(args: dict, monkeypatch) -> dict:
    """Run deployments.app.build_app on args with recording stand-ins for the Serve deployments
    (server_class and every Serve Deployment defined in a loaded deployments.* module). Returns
    {"deployments": {name: (role, options)}, "tree": the recorded application}: each bound node
    records its options and bind arguments (configs, handles to other nodes)."""
    import sys

    from ray.serve import Deployment

    import deployments.app as app_module

    class Recorder:
        def __init__(self, role):
            self.role = role

        def options(self, **opts):
            recorder = self

            class Bound:
                def bind(self, *bind_args, **bind_kwargs):
                    return {"role": recorder.role, "opts": opts, "bind_args": bind_args, "bind_kwargs": bind_kwargs}

            return Bound()

        def bind(self, *bind_args, **bind_kwargs):
            return self.options().bind(*bind_args, **bind_kwargs)

    for module_name, module in list(sys.modules.items()):
        if module_name == "deployments" or module_name.startswith("deployments."):
            for attr, value in list(vars(module).items()):
                if isinstance(value, Deployment):
                    monkeypatch.setattr(module, attr, Recorder(attr))
    monkeypatch.setattr(app_module, "server_class", Recorder)
    tree = app_module.build_app(copy.deepcopy(args))
    nodes: dict[str, tuple] = {}

    def walk(value):
        if isinstance(value, dict) and {"role", "opts", "bind_args"} <= set(value):
            name = value["opts"].get("name", value["role"])
            assert name not in nodes or nodes[name] == (value["role"], value["opts"]), f"deployment {name} bound twice"
            nodes[name] = (value["role"], value["opts"])
            walk(value["bind_args"])
            walk(value["bind_kwargs"])
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(tree)
    assert tree["opts"]["name"] == "Ingress", "build_app returns the ingress"
    return {"deployments": nodes, "tree": tree}


@functools.lru_cache(maxsize=1)
def _chart():
    helm_python = pytest.importorskip(
        "helm_python", reason="helm-python-sdk renders the chart offline (pip install helm-python-sdk)"
    )
    return helm_python.Chart.load(str(CHART))


def render(values: dict | None = None, name: str = "omniserve", namespace: str = "omniserve") -> list[dict]:
    """Render the chart (install) and parse every manifest."""
    manifests = _chart().render(copy.deepcopy(values or {}), name=name, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def only(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def render_error(values: dict):
    helm_python = pytest.importorskip("helm_python")
    with pytest.raises((helm_python.HelmValuesError, helm_python.HelmRenderError)) as info:
        render(values)
    return str(info.value)


def multinode_values() -> dict:
    return _yaml_load(MULTINODE_VALUES.read_text())


def embedded_values() -> dict:
    """The embedded profile through the chart: CPU image, no GPU group, replicas on the head."""
    args = copy.deepcopy(app_of(profile_serve_config("embedded.yaml"))["args"])
    # The chart's default ingress autoscales; a null removes that to keep the fixed num_replicas.
    args["ingress"]["deployment"]["autoscaling_config"] = None
    return {
        **args,
        "image": {"repository": "ghcr.io/omniserve/omniserve-cpu", "tag": "0.1.0"},
        "head": {
            "rayStartParams": {"num-cpus": None},
            "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}},
        },
        "workerGroups": {"gpu": {"enabled": False}, "cpu": {"enabled": False}},
        "autoscaling": {"enabled": False},
        "serve": {"proxyLocation": "HeadOnly"},
    }


def custom_values() -> dict:
    """Overrides, scale to zero, a fixed replica count, lightweight Serve overrides, admission
    left out, every optional object on, a different release layout."""
    return {
        "ingress": {"deployment": {"name": "Gateway"}},
        "modelOverrides": {
            "bge-m3": {
                "deployment": {
                    "autoscaling_config": {"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 16}
                }
            },
            "silero-vad": {"deployment": {"num_replicas": 2, "autoscaling_config": None}},
        },
        "serve": {
            "deploymentOverrides": {
                "LLMServer": {
                    "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4},
                    "max_ongoing_requests": 24,
                },
                "Gateway": {"num_replicas": 2},
            },
            "httpOptions": {"keep_alive_timeout_s": 90},
        },
        "workerGroups": {"gpu": {"maxReplicas": 3, "idleTimeoutSeconds": 600}},
        "autoscaling": {"options": {"upscalingMode": "Conservative"}},
        "upgradeStrategy": {"type": "None"},
        "rayAuth": {"mode": "disabled"},
        "apiKeys": {"keys": ["team-a", "team-b"]},
        "hubToken": {"token": "hf_test"},
        "modelCache": {"persistentVolumeClaim": {"enabled": True, "storageClassName": "nfs"}},
        "endpoint": {
            "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
                "hosts": [{"host": "omni.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "omni-tls", "hosts": ["omni.example.com"]}],
            },
        },
        "metrics": {"podMonitor": {"enabled": True}},
        "podDisruptionBudget": {"enabled": True},
        "extraEnv": [{"name": "RAY_SERVE_LOG_ENCODING", "value": "JSON"}],
        "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "omniserve@proj.iam.gserviceaccount.com"}},
    }


#: A custom Serve autoscaling policy (Serve's own default, named explicitly).
CUSTOM_POLICY = {
    "policy_function": "ray.serve.autoscaling_policy:replica_queue_length_autoscaling_policy",
    "policy_kwargs": {},
}


def policy_values() -> dict:
    """The session-policy cases: admission.scale_on_queue off; a model whose own
    autoscaling_config names a policy (passed through); deploymentOverrides with a plain
    autoscaling_config (converted, with its delays and initial_replicas), with a policy of its own
    (passed through), turning a fixed-count model into an autoscaled one (converted), and for the
    ingress (kept plain)."""
    return {
        "admission": {"scale_on_queue": False},
        "modelOverrides": {
            "bge-m3": {
                "deployment": {
                    "autoscaling_config": {
                        "min_replicas": 1,
                        "max_replicas": 2,
                        "target_ongoing_requests": 16,
                        "policy": CUSTOM_POLICY,
                    }
                }
            },
            "silero-vad": {"deployment": {"num_replicas": 1, "autoscaling_config": None}},
        },
        "serve": {
            "deploymentOverrides": {
                "LLMServer": {
                    "autoscaling_config": {
                        "min_replicas": 0,
                        "max_replicas": 2,
                        "target_ongoing_requests": 8,
                        "downscale_delay_s": 120,
                        "downscale_to_zero_delay_s": 900,
                    }
                },
                "STTServer": {
                    "autoscaling_config": {
                        "min_replicas": 1,
                        "max_replicas": 2,
                        "initial_replicas": 2,
                        "target_ongoing_requests": 4,
                        "downscale_delay_s": 300,
                    }
                },
                "TTSServer": {
                    "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "policy": CUSTOM_POLICY},
                    "max_ongoing_requests": 8,
                },
                "VADServer": {
                    "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 64}
                },
                "Ingress": {
                    "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 64}
                },
            }
        },
    }


#: What the chart renders besides the RayService by default: the head pod's Kubernetes API access.
HEAD_ACCESS_KINDS = ("ServiceAccount", "Role", "RoleBinding")

VALUE_SETS = {
    "default": lambda: {},
    "multinode": multinode_values,
    "embedded-cpu": embedded_values,
    "custom": custom_values,
    "policy": policy_values,
}

# ------------------------------------------------------------------------------------------
# Rendering and validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_chart_renders_valid_rayservice(value_set):
    docs = render(VALUE_SETS[value_set]())
    rs = only(docs, "RayService")
    serve_config, app = check_rayservice(rs)
    assert app["route_prefix"] == "/" and app["name"] == "omniserve"
    for doc in docs:
        if doc["kind"] in (
            "Secret",
            "PersistentVolumeClaim",
            "Ingress",
            "PodDisruptionBudget",
            "Service",
            *HEAD_ACCESS_KINDS,
        ):
            assert_k8s_valid(doc)


@pytest.mark.parametrize("value_set", ["default", "multinode"])
def test_chart_lints_clean(value_set):
    helm_python = pytest.importorskip("helm_python")
    report = helm_python.lint(str(CHART), VALUE_SETS[value_set](), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_values_build_the_gpu_24g_graph(monkeypatch):
    """Default values = configs/gpu-24g.yaml: same args, same Serve settings, and build_app
    binds the same deployments (names, roles, model ids, options) with the same config."""
    serve_config, app = check_rayservice(only(render(), "RayService"))
    profile = profile_serve_config("gpu-24g.yaml")
    assert app["args"] == app_of(profile)["args"], (
        "helm/omniserve/values.yaml (cascade, ingress, server, models) drifted from configs/gpu-24g.yaml args"
    )
    assert serve_config["proxy_location"] == profile["proxy_location"]
    assert serve_config["http_options"] == profile["http_options"]
    # The `deployments` entries repeat the args' replica settings: Serve runs what the code says.
    assert serve_options(app) == code_options(app_of(profile)["args"])
    assert {d["name"] for d in app["deployments"]} == set(code_options(app["args"]))
    rendered, expected = build_graph(app["args"], monkeypatch), build_graph(app_of(profile)["args"], monkeypatch)
    assert rendered == expected
    assert {"EmbeddingServer", "Ingress", "LLMServer", "STTServer", "TTSServer", "VADServer"} <= set(
        rendered["deployments"]
    )


def test_multinode_example_builds_the_gpu_multinode_graph(monkeypatch):
    rs = only(render(multinode_values()), "RayService")
    serve_config, app = check_rayservice(rs)
    profile = profile_serve_config("gpu-multinode.yaml")
    assert app["args"] == app_of(profile)["args"], (
        "helm/omniserve/examples/values-multinode.yaml drifted from configs/gpu-multinode.yaml args"
    )
    assert serve_config["proxy_location"] == profile["proxy_location"]
    assert serve_config["http_options"] == profile["http_options"]
    assert serve_options(app) == code_options(app_of(profile)["args"])
    rendered = build_graph(app["args"], monkeypatch)
    assert rendered == build_graph(app_of(profile)["args"], monkeypatch)
    assert "TranslationSTTServer" in rendered["deployments"]
    # The pools: the autoscaler reads the custom resources every deployment asks for.
    node_types = autoscaler_node_types(rs)
    assert node_types["gpu-llm"]["resources"]["pool-llm"] == 100
    assert node_types["gpu-speech"]["resources"]["pool-speech"] == 100
    assert node_types["gpu-llm"]["resources"]["GPU"] == 1 and node_types["gpu-llm"]["max_workers"] == 8
    assert "gpu" not in node_types and node_types["headgroup"]["resources"]["CPU"] == 0
    used = pack(replica_demands(app), node_types, "max")
    assert used["gpu-llm"] == 8 and used["gpu-speech"] == 6  # the documented GPU budget


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_values_map_exactly_onto_serve_options(value_set):
    """Each model's num_gpus, replica bounds and resources land in the Serve options build_app
    passes to Ray, unchanged from the values; import_path is deployments.app:build_app."""
    from deployments.config import DEFAULT_DEPLOYMENT_NAMES, AppConfig

    values = deep_merge(_chart().values, VALUE_SETS[value_set]())
    serve_config, app = check_rayservice(only(render(VALUE_SETS[value_set]()), "RayService"))
    assert app["import_path"] == IMPORT_PATH
    config = AppConfig.model_validate(app["args"])
    expected_models = []
    for m in values["models"]:
        m = copy.deepcopy(m)
        for key, value in (values.get("modelOverrides") or {}).get(m["id"], {}).items():
            if key == "deployment":
                m["deployment"] = {k: v for k, v in {**m["deployment"], **value}.items() if v is not None}
            else:
                m[key] = value
        expected_models.append(m)
    assert app["args"]["models"] == expected_models
    for model, want in zip(config.models, expected_models, strict=True):
        opts = model.deployment.serve_options(DEFAULT_DEPLOYMENT_NAMES[model.role], model.role)
        dep = want.get("deployment", {})
        assert opts["ray_actor_options"]["num_gpus"] == dep.get("num_gpus", 0)
        assert opts["ray_actor_options"]["num_cpus"] == dep.get("num_cpus", 1)
        assert opts["ray_actor_options"].get("resources", {}) == dep.get("resources", {})
        if "num_replicas" in dep:
            assert opts["num_replicas"] == dep["num_replicas"] and "autoscaling_config" not in opts
        else:
            assert opts["autoscaling_config"] == dep["autoscaling_config"]
    assert app["args"]["ingress"] == values["ingress"]
    assert app["args"]["server"] == values["server"]
    assert app["args"]["cascade"] == values["cascade"]
    # `deployments` entries: each deployment's replica settings from args, then deploymentOverrides;
    # a model's (plain) autoscaling_config in the form build_app gives Serve: session_autoscaling
    # with count_waiting = admission.scale_on_queue (AdmissionConfig's default: true).
    count_waiting = (values.get("admission") or {}).get("scale_on_queue", True)
    assert count_waiting is config.admission.scale_on_queue
    overrides = values["serve"]["deploymentOverrides"]
    expected = {}
    sources = [
        (m.deployment_name, want.get("deployment", {}), True)
        for m, want in zip(config.models, expected_models, strict=True)
    ]
    ingress = values["ingress"]["deployment"]
    for name, dep, model in sources + [(ingress.get("name") or "Ingress", ingress, False)]:
        entry = {}
        if dep.get("autoscaling_config"):
            entry["autoscaling_config"] = dep["autoscaling_config"]
        elif dep.get("num_replicas") is not None:
            entry["num_replicas"] = dep["num_replicas"]
        override = overrides.get(name, {})
        if "autoscaling_config" in override:
            entry.pop("num_replicas", None)
        elif "num_replicas" in override:
            entry["autoscaling_config"] = None
        entry.update(override)
        if entry.get("autoscaling_config") is not None:
            entry["autoscaling_config"] = expected_entry_autoscaling(entry["autoscaling_config"], count_waiting, model)
        if entry:
            expected[name] = entry
    assert {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])} == expected
    # What Serve runs: the entries over the code's options. Where the entry comes from args alone,
    # that is exactly what build_app passes (the entry drops nothing, the policy included).
    effective = serve_options(app)
    code = code_options(app["args"])
    for name, _, _ in sources + [(ingress.get("name") or "Ingress", ingress, False)]:
        if name not in overrides:
            assert effective[name] == code[name], name
    for name, override in overrides.items():
        for key, value in override.items():
            if key == "autoscaling_config":
                value = expected_entry_autoscaling(value, count_waiting, name != (ingress.get("name") or "Ingress"))
            assert effective[name][key] == value, (name, key)
    assert serve_config["http_options"] == {"host": "0.0.0.0", "port": 8000, **values["serve"]["httpOptions"]}


def test_custom_values_reach_the_cluster_objects():
    docs = render(custom_values(), name="voice", namespace="ai")
    rs = only(docs, "RayService")
    check_rayservice(rs)
    assert rs["metadata"]["name"] == "voice-omniserve"
    spec, rc = rs["spec"], rs["spec"]["rayClusterConfig"]
    assert spec["upgradeStrategy"] == {"type": "None"}
    assert rc["authOptions"] == {"mode": "disabled"}
    assert rc["autoscalerOptions"]["upscalingMode"] == "Conservative"
    gpu = {g["groupName"]: g for g in rc["workerGroupSpecs"]}["gpu"]
    assert gpu["maxReplicas"] == 3 and gpu["idleTimeoutSeconds"] == 600

    # Secrets created by the chart, referenced (required) by every Ray container.
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert secrets["voice-omniserve-api-keys"]["stringData"] == {"api-keys": "team-a,team-b"}
    assert secrets["voice-omniserve-hub-token"]["stringData"] == {"token": "hf_test"}
    for _, group in ray_groups(rs):
        container = group["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["OMNISERVE_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "voice-omniserve-api-keys",
            "key": "api-keys",
            "optional": False,
        }
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "voice-omniserve-hub-token",
            "key": "token",
            "optional": False,
        }
        assert env["HF_HOME"]["value"] == "/models/huggingface"
        assert env["RAY_SERVE_LOG_ENCODING"]["value"] == "JSON"
        volumes = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "voice-omniserve-model-cache"
        assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]} == {
            "model-cache": "/models",
            "dshm": "/dev/shm",
        }

    pvc = only(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "voice-omniserve-model-cache"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "nfs"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # The Ingress reaches the serve Service KubeRay manages.
    service = spec["serveService"]
    assert service["metadata"]["name"] == "voice-omniserve-serve-svc" and service["spec"]["type"] == "LoadBalancer"
    ingress = only(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "voice-omniserve-serve-svc", "port": {"name": "serve"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "omni-tls" and ingress["spec"]["ingressClassName"] == "nginx"
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]  # one scrape: Ray's export port
    pod_monitor = only(docs, "PodMonitor")
    assert pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    for _, group in ray_groups(rs):
        labels = group["template"]["metadata"]["labels"]
        assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
        assert ports["metrics"] == 8080

    # PodDisruptionBudgets select the head pod and the worker pods respectively.
    pdbs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert set(pdbs) == {"voice-omniserve-head", "voice-omniserve-workers"}
    for name, group in ray_groups(rs):
        labels = group["template"]["metadata"]["labels"]
        selected = [p for p, d in pdbs.items() if d["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert selected == ["voice-omniserve-head" if name == "head" else "voice-omniserve-workers"]
    assert pdbs["voice-omniserve-head"]["spec"] == {
        "minAvailable": 1,
        "selector": pdbs["voice-omniserve-head"]["spec"]["selector"],
    }


def test_defaults_reference_optional_secrets_and_an_emptydir_cache():
    docs = render()
    assert {d["kind"] for d in docs} == {"RayService", *HEAD_ACCESS_KINDS}
    rs = only(docs, "RayService")
    for _, group in ray_groups(rs):
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["OMNISERVE_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "omniserve-api-keys",
            "key": "api-keys",
            "optional": True,
        }
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
        volumes = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {"sizeLimit": "100Gi"}}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    # Existing secrets and claims are referenced, not created.
    docs = render(
        {
            "apiKeys": {"existingSecret": "keys"},
            "hubToken": {"existingSecret": "hub", "secretKey": "HF"},
            "modelCache": {"persistentVolumeClaim": {"enabled": True, "existingClaim": "weights"}},
        }
    )
    assert {d["kind"] for d in docs} == {"RayService", *HEAD_ACCESS_KINDS}
    head = only(docs, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["OMNISERVE_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "keys",
        "key": "api-keys",
        "optional": False,
    }
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": "HF", "optional": False}
    assert {v["name"]: v for v in head["volumes"]}["model-cache"]["persistentVolumeClaim"] == {"claimName": "weights"}


def test_admin_keys_come_from_the_same_secret():
    docs = render({"apiKeys": {"keys": ["team-a"], "adminKeys": ["ops-1", "ops-2"]}})
    secret = only(docs, "Secret")
    assert secret["stringData"] == {"api-keys": "team-a", "admin-keys": "ops-1,ops-2"}
    assert_k8s_valid(secret)
    for _, group in ray_groups(only(docs, "RayService")):
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["OMNISERVE_ADMIN_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "omniserve-api-keys",
            "key": "admin-keys",
            "optional": False,
        }
    # without admin keys the reference is optional (an existing Secret may or may not hold one)
    env = {
        e["name"]: e for e in ray_groups(only(render(), "RayService"))[0][1]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["OMNISERVE_ADMIN_KEYS"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_cluster_layout_head_cpu_and_gpu_groups():
    """Head: no GPU, no Ray CPUs (no replicas); GPU groups: nvidia.com/gpu limits, minReplicas 0,
    Ray sees the GPUs; autoscaling on; KubeRay's rayStartParams resources format."""
    rs = only(render(), "RayService")
    rc = rs["spec"]["rayClusterConfig"]
    assert rc["enableInTreeAutoscaling"] is True and rc["autoscalerOptions"]["version"] == "v2"
    head = rc["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert not any("gpu" in k for k in head["template"]["spec"]["containers"][0]["resources"].get("limits", {}))
    groups = {g["groupName"]: g for g in rc["workerGroupSpecs"]}
    assert list(groups) == ["cpu", "gpu"]
    assert groups["gpu"]["minReplicas"] == 0
    assert groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    node_types = autoscaler_node_types(rs)
    assert node_types["gpu"]["resources"]["GPU"] == 1 and node_types["gpu"]["min_workers"] == 0
    assert node_types["headgroup"]["resources"]["CPU"] == 0 and "GPU" not in node_types["headgroup"]["resources"]
    assert "GPU" not in node_types["cpu"]["resources"]

    multinode = only(render(multinode_values()), "RayService")["spec"]["rayClusterConfig"]
    params = {g["groupName"]: g["rayStartParams"] for g in multinode["workerGroupSpecs"]}
    assert params["gpu-llm"]["resources"] == '"{\\"pool-llm\\":100}"'  # KubeRay's documented format
    assert "resources" not in params["cpu"]


# ------------------------------------------------------------------------------------------
# The head pod's Kubernetes API access (pod-based start ETAs)
# ------------------------------------------------------------------------------------------


def rbac_allows(role: dict, verb: str, resource: str, api_group: str = "") -> bool:
    """Kubernetes RBAC's rule matching for a namespaced request without a resource name: some
    rule lists the request's API group, resource and verb (or "*" for any)."""
    for rule in role.get("rules") or []:
        wanted = (("apiGroups", api_group), ("resources", resource), ("verbs", verb))
        if not rule.get("resourceNames") and all(
            value in rule.get(field, []) or "*" in rule.get(field, []) for field, value in wanted
        ):
            return True
    return False


def head_access(docs: list[dict]) -> dict[str, dict]:
    """{kind: object} of the ServiceAccount, Role and RoleBinding that were rendered."""
    found = {d["kind"]: d for d in docs if d["kind"] in HEAD_ACCESS_KINDS}
    assert len(found) == len([d for d in docs if d["kind"] in HEAD_ACCESS_KINDS]), "one of each at most"
    return found


def pod_service_accounts(rs: dict) -> dict[str, str | None]:
    return {name: g["template"]["spec"].get("serviceAccountName") for name, g in ray_groups(rs)}


@pytest.mark.parametrize("release", [("omniserve", "omniserve"), ("voice", "ai")])
def test_head_pod_may_list_and_watch_pods_and_nothing_more(release):
    name, namespace = release
    docs = render(name=name, namespace=namespace)
    rs = only(docs, "RayService")
    found = head_access(docs)
    assert set(found) == set(HEAD_ACCESS_KINDS)
    for obj in found.values():
        assert_k8s_valid(obj)
    account, role, binding = found["ServiceAccount"], found["Role"], found["RoleBinding"]
    fullname = rs["metadata"]["name"]
    assert account["metadata"]["name"] == f"{fullname}-head"

    # The Role: list and watch on core pods, exactly.
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
    # deployments/admission/pods/watcher.py's two requests: GET .../pods?labelSelector= (list) and the
    # same with watch=true (watch)
    assert rbac_allows(role, "list", "pods") and rbac_allows(role, "watch", "pods")
    for verb, resource, group in [
        ("get", "pods", ""),
        ("create", "pods", ""),
        ("patch", "pods", ""),
        ("delete", "pods", ""),
        ("get", "pods/log", ""),
        ("create", "pods/exec", ""),
        ("list", "secrets", ""),
        ("watch", "services", ""),
        ("list", "events", ""),
        ("get", "rayclusters", "ray.io"),
        ("list", "pods", "metrics.k8s.io"),
    ]:
        assert not rbac_allows(role, verb, resource, group), (verb, resource, group)

    # The RoleBinding: that Role, to the ServiceAccount the head pod runs as (and only the head).
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    ]
    accounts = pod_service_accounts(rs)
    assert accounts.pop("head") == account["metadata"]["name"]
    assert set(accounts.values()) == {None}, "worker pods keep the namespace's default ServiceAccount"
    # KubeRay sets RAY_CLUSTER_NAME itself (the watcher's label selector); the chart leaves it alone
    for _, group in ray_groups(rs):
        assert "RAY_CLUSTER_NAME" not in {e["name"] for e in group["template"]["spec"]["containers"][0]["env"]}


def test_head_access_values():
    # rbac off: no Role, no RoleBinding; the head pod still runs as the chart's ServiceAccount
    docs = render({"rbac": {"create": False}})
    assert set(head_access(docs)) == {"ServiceAccount"}
    assert pod_service_accounts(only(docs, "RayService"))["head"] == "omniserve-head"

    # an existing ServiceAccount: not created, used by the head pod, bound to the Role
    docs = render({"serviceAccount": {"create": False, "name": "ml-head"}})
    found = head_access(docs)
    assert set(found) == {"Role", "RoleBinding"}
    assert found["RoleBinding"]["subjects"][0]["name"] == "ml-head"
    assert pod_service_accounts(only(docs, "RayService"))["head"] == "ml-head"

    # a created ServiceAccount with a name and workload-identity annotations
    annotations = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/omniserve"}
    docs = render({"serviceAccount": {"name": "omni-head", "annotations": annotations}})
    found = head_access(docs)
    assert found["ServiceAccount"]["metadata"]["name"] == "omni-head"
    assert found["ServiceAccount"]["metadata"]["annotations"] == annotations
    assert found["RoleBinding"]["subjects"][0]["name"] == "omni-head"
    assert_k8s_valid(found["ServiceAccount"])

    # both off: nothing beyond the RayService; serviceAccountName (every Ray pod) as before
    docs = render({"serviceAccount": {"create": False}, "rbac": {"create": False}})
    assert head_access(docs) == {}
    assert set(pod_service_accounts(only(docs, "RayService")).values()) == {None}
    docs = render({"serviceAccount": {"create": False}, "rbac": {"create": False}, "serviceAccountName": "ray"})
    assert set(pod_service_accounts(only(docs, "RayService")).values()) == {"ray"}
    # serviceAccountName alone names the head's account when the chart creates none: rbac binds it
    docs = render({"serviceAccount": {"create": False}, "serviceAccountName": "ray"})
    assert head_access(docs)["RoleBinding"]["subjects"][0]["name"] == "ray"
    check_rayservice(only(docs, "RayService"))


def test_release_names_follow_kuberay_limits():
    long_name = "a" * 60
    rs = only(render(name=long_name), "RayService")
    assert rs["metadata"]["name"] == "a" * 47
    check_rayservice(rs)
    assert "DNS-1035" in render_error({"fullnameOverride": "9lives"})


# ------------------------------------------------------------------------------------------
# Invalid values fail at render (install/upgrade) time
# ------------------------------------------------------------------------------------------

INVALID = {
    "negative worker minReplicas": ({"workerGroups": {"gpu": {"minReplicas": -1}}}, "minReplicas"),
    "negative worker maxReplicas": ({"workerGroups": {"cpu": {"maxReplicas": -2}}}, "maxReplicas"),
    "worker min above max": ({"workerGroups": {"gpu": {"minReplicas": 3}}}, "minReplicas (3) > maxReplicas (2)"),
    "negative num_replicas": (
        {"modelOverrides": {"bge-m3": {"deployment": {"num_replicas": -1, "autoscaling_config": None}}}},
        "num_replicas",
    ),
    "negative min_replicas": (
        {"modelOverrides": {"bge-m3": {"deployment": {"autoscaling_config": {"min_replicas": -1}}}}},
        "min_replicas",
    ),
    "model min above max": (
        {"modelOverrides": {"bge-m3": {"deployment": {"autoscaling_config": {"min_replicas": 3}}}}},
        "min_replicas (3) > max_replicas (2)",
    ),
    "model without source": ({"models": [{"id": "llm", "role": "llm", "backend": "transformers"}]}, "source"),
    "source removed by override": ({"modelOverrides": {"bge-m3": {"source": None}}}, "needs a source"),
    "empty source": ({"models": [{"id": "llm", "role": "llm", "backend": "transformers", "source": ""}]}, "source"),
    "num_gpus above a worker's GPUs": (
        {"modelOverrides": {"qwen2.5-3b-instruct": {"deployment": {"num_gpus": 2}}}},
        "no Ray group can hold",
    ),
    "num_gpus above the per-replica maximum": (
        {"modelOverrides": {"bge-m3": {"deployment": {"num_gpus": 16}}}},
        "num_gpus",
    ),
    "fractional num_gpus above 1": ({"modelOverrides": {"bge-m3": {"deployment": {"num_gpus": 1.5}}}}, "num_gpus"),
    "GPUs at min_replicas above the groups": (
        {"workerGroups": {"gpu": {"maxReplicas": 1}}, "modelOverrides": {"bge-m3": {"deployment": {"num_gpus": 0.5}}}},
        "GPUs at min_replicas",
    ),
    "pool no group advertises": (
        {"modelOverrides": {"bge-m3": {"deployment": {"resources": {"pool-llm": 1}}}}},
        "no Ray group can hold",
    ),
    "num_cpus above every pod": (
        {"modelOverrides": {"bge-m3": {"deployment": {"num_cpus": 12}}}},
        "no Ray group can hold",
    ),
    "ingress with no CPU anywhere": (
        {"workerGroups": {"cpu": {"enabled": False}, "gpu": {"enabled": False}}},
        "no Ray group can hold",
    ),
    "num_replicas and autoscaling_config": (
        {"modelOverrides": {"bge-m3": {"deployment": {"num_replicas": 1}}}},
        "not both",
    ),
    "backend of another role": ({"modelOverrides": {"bge-m3": {"backend": "nemo"}}}, "backend"),
    "unknown override id": ({"modelOverrides": {"bge-m4": {"deployment": {"num_gpus": 0.1}}}}, "no model has this id"),
    "unknown Serve deployment": (
        {"serve": {"deploymentOverrides": {"LLMServr": {"num_replicas": 1}}}},
        "no such Serve deployment",
    ),
    "restarting option in deploymentOverrides": (
        {"serve": {"deploymentOverrides": {"LLMServer": {"num_gpus": 1}}}},
        "num_gpus",
    ),
    "duplicate deployment name": ({"modelOverrides": {"bge-m3": {"deployment": {"name": "LLMServer"}}}}, "used twice"),
    "unknown top-level key": ({"model": []}, "model"),
    "rbac without a ServiceAccount to bind": ({"serviceAccount": {"create": False}}, "rbac.create binds"),
    "http host override": ({"serve": {"httpOptions": {"host": "127.0.0.1"}}}, "httpOptions"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_values_are_rejected(case):
    values, message = INVALID[case]
    assert message in render_error(values)


def test_valid_edge_values_render():
    """Counterparts of the rejections: silero/scripted need no source, min_replicas 0 and whole
    GPUs above 1 are fine when a group holds them."""
    values = {
        "models": [
            {"id": "echo", "role": "llm", "backend": "scripted"},
            {"id": "vad", "role": "vad", "backend": "silero", "deployment": {"num_cpus": 0.5, "num_replicas": 1}},
            {
                "id": "big",
                "role": "embeddings",
                "backend": "sentence-transformers",
                "source": "BAAI/bge-m3",
                "deployment": {"num_gpus": 2, "autoscaling_config": {"min_replicas": 0, "max_replicas": 1}},
            },
        ],
        "workerGroups": {"gpu": {"gpus": 2, "maxReplicas": 1}},
    }
    check_rayservice(only(render(values), "RayService"))


def test_values_schema_tracks_appconfig_and_backends():
    """values.schema.json describes the same fields as deployments/config.py and the same
    backends per role as models/registry.py."""
    from deployments.config import AppConfig, CascadeConfig, DeploymentOptions, IngressConfig, ModelConfig, ServerConfig
    from models.registry import BACKENDS

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CHART / "values.schema.json").read_text())
    # A draft-07 schema (Helm 3's and Helm 4's validators both read it) that a second
    # implementation applies the same way: shipped values pass, an invalid one does not.
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    assert not list(validator.iter_errors(_chart().values))
    assert not list(validator.iter_errors(deep_merge(_chart().values, multinode_values())))
    assert list(validator.iter_errors(deep_merge(_chart().values, {"workerGroups": {"gpu": {"maxReplicas": -1}}})))
    defs, props = schema["definitions"], schema["properties"]
    assert set(defs["deployment"]["properties"]) == set(DeploymentOptions.model_fields)
    assert set(defs["model"]["properties"]) == set(ModelConfig.model_fields)
    assert set(defs["modelPatch"]["properties"]) == set(ModelConfig.model_fields)
    assert set(props["cascade"]["properties"]) == set(CascadeConfig.model_fields)
    assert set(props["ingress"]["properties"]) == set(IngressConfig.model_fields)
    assert set(props["server"]["properties"]) == set(ServerConfig.model_fields)
    assert set(AppConfig.model_fields) <= set(props)
    per_role = {
        rule["if"]["properties"]["role"]["const"]: rule["then"]["properties"]["backend"]["enum"]
        for rule in defs["model"]["allOf"]
        if "role" in rule["if"].get("properties", {})
    }
    assert {role: sorted(names) for role, names in per_role.items()} == {
        role: sorted(b) for role, b in BACKENDS.items()
    }


def test_template_backend_check_tracks_the_registry():
    """The render-time backend check (merged models) accepts every registered backend of a
    role and only those."""
    from models.registry import BACKENDS

    for role, registered in BACKENDS.items():
        backends = sorted(registered)
        for backend in backends:
            model = {"id": "m", "role": role, "backend": backend, "source": "org/model"}
            render({"models": [model]})
        other = next(b for r, bs in BACKENDS.items() if r != role for b in bs if b not in backends)
        message = render_error(
            {
                "models": [{"id": "a", "role": role, "backend": backends[0], "source": "x"}],
                "modelOverrides": {"a": {"backend": other}},
            }
        )
        assert f"unknown {role} backend {other}" in message


def test_admission_block_passes_through_unchanged():
    admission = {"sessions_per_replica": 24, "max_queue": 64, "reservation_ttl_s": 30}
    _, app = _serve_app(render({"admission": admission}))
    assert app["args"]["admission"] == deep_merge(_chart().values["admission"], admission)
    _, app = _serve_app(render())
    assert app["args"]["admission"] == _chart().values["admission"]
    _, app = _serve_app(render({"admission": None}))
    assert "admission" not in app["args"]


def test_admission_block_is_accepted_by_appconfig():
    from deployments.config import AppConfig

    if "admission" not in AppConfig.model_fields:
        pytest.skip(
            "deployments/config.py AppConfig has no `admission` field yet: the chart passes "
            "values.admission through to args.admission, which AppConfig (extra=forbid) would reject"
        )
    admission = {"sessions_per_replica": 24, "max_queue": 64, "reservation_ttl_s": 30}
    check_rayservice(only(render({"admission": admission}), "RayService"))


# ------------------------------------------------------------------------------------------
# The session autoscaling policy in the `deployments` entries
# ------------------------------------------------------------------------------------------

#: Plain autoscaling_configs (as a deploymentOverrides entry gives them) covering every branch of
#: session_autoscaling: floor given or not (1), 0, delay to zero from downscale_to_zero_delay_s /
#: downscale_delay_s / Serve's default, initial_replicas given, other Serve fields, a policy of
#: its own, an empty config.
PLAIN_AUTOSCALING = {
    "bounds": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8},
    "no-floor": {"max_replicas": 3},
    "to-zero": {"min_replicas": 0, "max_replicas": 2, "downscale_to_zero_delay_s": 45.5},
    "downscale-delay": {"min_replicas": 0, "max_replicas": 2, "downscale_delay_s": 30},
    "both-delays": {"min_replicas": 2, "max_replicas": 3, "downscale_delay_s": 30, "downscale_to_zero_delay_s": 900},
    "initial": {"min_replicas": 1, "max_replicas": 3, "initial_replicas": 3},
    "serve-fields": {
        "min_replicas": 1,
        "max_replicas": 3,
        "upscale_delay_s": 5,
        "look_back_period_s": 15,
        "metrics_interval_s": 5,
        "upscaling_factor": 2.0,
        "downscaling_factor": 0.5,
    },
    "own-policy": {"min_replicas": 1, "max_replicas": 2, "policy": CUSTOM_POLICY},
    "empty": {},
}


@pytest.mark.parametrize("scale_on_queue", [True, False])
@pytest.mark.parametrize("case", sorted(PLAIN_AUTOSCALING))
def test_chart_session_autoscaling_mirrors_options_py(case, scale_on_queue):
    """The chart's omniserve.sessionAutoscaling (helm/omniserve/templates/_helpers.tpl) gives a
    model's plain serve.deploymentOverrides autoscaling_config exactly what
    deployments/scaling/options.py session_autoscaling gives it (a config naming its own policy
    unchanged), with count_waiting = admission.scale_on_queue; the ingress's stays plain."""
    from ray.serve.config import AutoscalingConfig

    from deployments.scaling.options import session_autoscaling

    plain = PLAIN_AUTOSCALING[case]
    ingress = {**plain, "max_replicas": 4}  # the same config (non-empty) for the ingress
    values = {
        "admission": {"scale_on_queue": scale_on_queue},
        "serve": {
            "deploymentOverrides": {
                "EmbeddingServer": {"autoscaling_config": plain},
                "Ingress": {"autoscaling_config": ingress},
            }
        },
    }
    _, app = check_rayservice(only(render(values), "RayService"), pack_max=False)
    entries = {d["name"]: d for d in app["deployments"]}
    want = session_autoscaling(copy.deepcopy(plain), count_waiting=scale_on_queue)
    assert entries["EmbeddingServer"]["autoscaling_config"] == want
    if "policy" in plain:
        assert want == plain
    AutoscalingConfig(**entries["EmbeddingServer"]["autoscaling_config"])
    assert entries["Ingress"]["autoscaling_config"] == ingress
    assert app["args"]["admission"]["scale_on_queue"] is scale_on_queue


@pytest.mark.parametrize(
    ("admission", "count_waiting"),
    [
        ({}, True),
        ({"admission": None}, True),
        ({"admission": {"scale_on_queue": True}}, True),
        ({"admission": {"scale_on_queue": False}}, False),
    ],
)
def test_scale_on_queue_sets_count_waiting_of_every_model_entry(admission, count_waiting):
    """count_waiting follows admission.scale_on_queue (default true, as in AdmissionConfig) in
    every model entry, and agrees with what build_app reads from the rendered args."""
    from deployments.config import AppConfig
    from deployments.scaling.options import POLICY_PATH

    _, app = _serve_app(render(admission))
    assert AppConfig.model_validate(app["args"]).admission.scale_on_queue is count_waiting
    models = {m.deployment_name for m in AppConfig.model_validate(app["args"]).models}
    entries = {d["name"]: d["autoscaling_config"] for d in app["deployments"]}
    assert set(entries) == models | {"Ingress"}
    for name in models:
        assert entries[name]["policy"]["policy_function"] == POLICY_PATH
        assert entries[name]["policy"]["policy_kwargs"]["count_waiting"] is count_waiting
    assert "policy" not in entries["Ingress"]


def test_model_entries_keep_the_policy_build_app_sets(monkeypatch):
    """With the default values, each model entry is the autoscaling_config build_app itself
    passes to Deployment.options (recorded), policy included: Serve's override of the code's
    options changes nothing. The ingress's entry is its plain config, as in the code."""
    _, app = _serve_app(render())
    graph = build_graph(app["args"], monkeypatch)["deployments"]
    for entry in app["deployments"]:
        _, opts = graph[entry["name"]]
        assert entry["autoscaling_config"] == opts["autoscaling_config"], entry["name"]


def test_policy_value_set_passes_own_policies_through():
    """In the `policy` value set: a model config and a deploymentOverrides entry that name their
    own policy are rendered unchanged; the fixed-count model turned autoscaled by an override gets
    the session policy; count_waiting is false (scale_on_queue: false)."""
    from deployments.scaling.options import POLICY_PATH

    _, app = _serve_app(render(policy_values()))
    entries = {d["name"]: d for d in app["deployments"]}
    assert entries["EmbeddingServer"]["autoscaling_config"]["policy"] == CUSTOM_POLICY
    assert entries["EmbeddingServer"]["autoscaling_config"]["min_replicas"] == 1
    assert (
        entries["TTSServer"]["autoscaling_config"]
        == policy_values()["serve"]["deploymentOverrides"]["TTSServer"]["autoscaling_config"]
    )
    assert entries["TTSServer"]["max_ongoing_requests"] == 8
    vad = entries["VADServer"]
    assert "num_replicas" not in vad and vad["autoscaling_config"]["policy"]["policy_function"] == POLICY_PATH
    llm = entries["LLMServer"]["autoscaling_config"]
    assert llm["policy"]["policy_kwargs"] == {"min_replicas": 0, "to_zero_delay_s": 900, "count_waiting": False}
    stt = entries["STTServer"]["autoscaling_config"]
    assert stt["initial_replicas"] == 2 and stt["policy"]["policy_kwargs"]["to_zero_delay_s"] == 300


def _serve_app(docs: list[dict]) -> tuple[dict, dict]:
    serve_config = _yaml_load(only(docs, "RayService")["spec"]["serveConfigV2"])
    return serve_config, app_of(serve_config)


# ------------------------------------------------------------------------------------------
# The operator commands of the README's cluster guide
# ------------------------------------------------------------------------------------------


def doc_commands() -> list[str]:
    """Shell commands of the ```sh blocks of the README's cluster guide (continuations joined)."""
    text = DOCS.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def helm_values_of(command: str) -> dict | None:
    """The user values a documented `helm install/upgrade ... helm/omniserve ...` passes, parsed
    with Helm's own --set parsers; None for other commands."""
    helm_python = pytest.importorskip("helm_python")
    argv = shlex.split(command)
    if argv[:2] not in (["helm", "install"], ["helm", "upgrade"]) or "helm/omniserve" not in argv:
        return None
    values: dict = {}
    parsers = {
        "--set": helm_python.parse_set_string,
        "--set-json": helm_python.parse_set_json,
        "--set-string": helm_python.parse_set_string_values,
    }
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-f", "--values"):
            path = REPO / argv[i + 1]
            if not path.is_file():  # the reader's own values file (my-values.yaml)
                return None
            values = deep_merge(values, _yaml_load(path.read_text()))
            i += 1
        elif arg in parsers:
            values = deep_merge(values, parsers[arg](argv[i + 1]))
            i += 1
        i += 1
    return values


def test_documented_helm_commands_render_valid_releases():
    commands = [c for c in doc_commands() if helm_values_of(c) is not None]
    assert len(commands) >= 6, commands
    seen = set()
    for command in commands:
        values = helm_values_of(command)
        rs = only(render(values), "RayService")
        serve_config, app = check_rayservice(rs, pack_max=False)
        if "serve.deploymentOverrides" in command:
            from deployments.scaling.options import session_autoscaling

            entries = {d["name"]: d for d in app["deployments"]}
            plain = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}
            # The plain override arrives in the session-policy form, as build_app would give it.
            assert entries["LLMServer"] == {"name": "LLMServer", "autoscaling_config": session_autoscaling(plain)}
            llm = {d["name"]: d for d in replica_demands(app)}["LLMServer"]
            assert (llm["min"], llm["max"]) == (1, 4)
            seen.add("deploymentOverrides")
        if "workerGroups.gpu.maxReplicas=4" in command:
            gpu = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}["gpu"]
            assert gpu["maxReplicas"] == 4
            seen.add("maxReplicas")
        if "modelOverrides" in command:
            bge = {m["id"]: m for m in app["args"]["models"]}["bge-m3"]
            assert bge["deployment"]["num_gpus"] == 0.2
            seen.add("modelOverrides")
        if "values-multinode.yaml" in command:
            assert app["args"] == app_of(profile_serve_config("gpu-multinode.yaml"))["args"]
            seen.add("multinode")
    assert seen == {"deploymentOverrides", "maxReplicas", "modelOverrides", "multinode"}


def _code_version(app: dict) -> str:
    try:
        from ray.serve._private.deploy_utils import get_app_code_version
        from ray.serve.schema import ServeApplicationSchema
    except ImportError as exc:  # a Ray without this helper: the comparison cannot be made
        pytest.skip(f"Ray Serve's get_app_code_version is not importable: {exc}")
    return get_app_code_version(ServeApplicationSchema.model_validate(app))


def test_documented_kubectl_merge_patch_updates_autoscaling_in_place(tmp_path):
    """the README's cluster guide: dump serveConfigV2, edit the LLMServer entry as documented, build the
    JSON merge patch with the documented jq filter, `kubectl patch --type merge`. The documented
    entry is the rendered one (the session-policy form) with only Serve's max_replicas changed.
    The patched RayService still validates, Serve reads the new bounds, the policy keeps the
    floor, rayClusterConfig is untouched (KubeRay applies it in place) and the application's code
    version is unchanged (Ray Serve updates the replicas without restarting them)."""
    text = DOCS.read_text()
    patch_lines = [c for c in doc_commands() if "patch rayservice" in c]
    assert len(patch_lines) == 1 and "--type merge" in patch_lines[0], patch_lines
    jq_filter = re.search(r"jq -Rs '([^']+)' serve\.yaml", patch_lines[0]).group(1)
    edit_block = next(
        b
        for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
        if "of applications[0].deployments in serve.yaml" in b
    )
    (edited,) = _yaml_load(edit_block)

    rs = only(render(), "RayService")
    before_config = _yaml_load(rs["spec"]["serveConfigV2"])
    serve_config = copy.deepcopy(before_config)
    entries = serve_config["applications"][0]["deployments"]
    (index,) = [i for i, e in enumerate(entries) if e["name"] == edited["name"]]  # an existing entry
    assert entries[index] != edited
    rendered_auto = {k: v for k, v in entries[index]["autoscaling_config"].items() if k != "max_replicas"}
    assert {k: v for k, v in edited["autoscaling_config"].items() if k != "max_replicas"} == rendered_auto
    entries[index] = edited
    serve_file = tmp_path / "serve.yaml"
    serve_file.write_text(yaml.safe_dump(serve_config, sort_keys=False))

    if shutil.which("jq"):
        patch = json.loads(
            subprocess.run(["jq", "-Rs", jq_filter, str(serve_file)], check=True, capture_output=True, text=True).stdout
        )
    else:  # the filter wraps the raw file in {spec: {serveConfigV2: ...}}; same result without jq
        assert jq_filter == "{spec: {serveConfigV2: .}}"
        patch = {"spec": {"serveConfigV2": serve_file.read_text()}}
    assert patch == {"spec": {"serveConfigV2": serve_file.read_text()}}

    patched = merge_patch(rs, patch)
    new_config, app = check_rayservice(patched, pack_max=False)
    assert patched["spec"]["rayClusterConfig"] == rs["spec"]["rayClusterConfig"]
    assert {k: v for k, v in patched["spec"].items() if k != "serveConfigV2"} == {
        k: v for k, v in rs["spec"].items() if k != "serveConfigV2"
    }
    from ray.serve.schema import ServeDeploySchema

    deployment = {d.name: d for d in ServeDeploySchema.model_validate(new_config).applications[0].deployments}[
        "LLMServer"
    ]
    assert deployment.autoscaling_config["max_replicas"] == 4 and deployment.autoscaling_config["min_replicas"] == 0
    assert deployment.autoscaling_config["policy"]["policy_kwargs"]["min_replicas"] == 1
    llm = {d["name"]: d for d in replica_demands(app)}["LLMServer"]
    assert (llm["min"], llm["max"]) == (1, 4)
    assert _code_version(app) == _code_version(app_of(before_config))


def test_which_changes_restart_replicas():
    """the README's cluster guide: new args are new code for Ray Serve (every replica is replaced);
    new Serve bounds in an existing `deployments` entry are not; Ray Serve 2.60 hashes the entries'
    autoscaling policies, so a new floor or delay to zero (policy_kwargs of the session policy)
    and turning an entry into a fixed num_replicas change the code version."""
    _, before = _serve_app(render())
    _, new_args = _serve_app(render({"modelOverrides": {"bge-m3": {"deployment": {"num_gpus": 0.2}}}}))
    assert _code_version(new_args) != _code_version(before)
    bounds = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 32}}
    _, new_bounds = _serve_app(render({"serve": {"deploymentOverrides": {"EmbeddingServer": bounds}}}))
    assert new_bounds["args"] == before["args"]
    assert _code_version(new_bounds) == _code_version(before)
    for changed in ({"min_replicas": 0}, {"downscale_delay_s": 60}, {"downscale_to_zero_delay_s": 60}):
        auto = {**bounds["autoscaling_config"], **changed}
        _, new_policy = _serve_app(
            render({"serve": {"deploymentOverrides": {"EmbeddingServer": {"autoscaling_config": auto}}}})
        )
        assert new_policy["args"] == before["args"]
        assert _code_version(new_policy) != _code_version(before), changed
    _, fixed = _serve_app(render({"serve": {"deploymentOverrides": {"EmbeddingServer": {"num_replicas": 2}}}}))
    assert _code_version(fixed) != _code_version(before)


def test_documented_raycluster_patch_sets_the_gpu_group_bounds():
    """the README's cluster guide lever 3: the JSON patch on the live RayCluster targets the gpu group
    (index 1 of the default groups) and leaves a valid RayCluster."""
    (line,) = [c for c in doc_commands() if "patch raycluster" in c]
    ops = json.loads(re.search(r"-p '(\[.*\])'", line).group(1))
    rs = only(render(), "RayService")
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "omniserve-abcde"},
        "spec": copy.deepcopy(rs["spec"]["rayClusterConfig"]),
    }
    assert [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]] == ["cpu", "gpu"]
    patched = json_patch(cluster, ops)
    assert_crd_valid(patched, "rayclusters")
    assert patched["spec"]["workerGroupSpecs"][1]["groupName"] == "gpu"
    assert patched["spec"]["workerGroupSpecs"][1]["maxReplicas"] == 4
    assert patched["spec"]["workerGroupSpecs"][0] == cluster["spec"]["workerGroupSpecs"][0]
