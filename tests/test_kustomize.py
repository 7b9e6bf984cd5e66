"""The kustomize manifests (k8s/), rendered offline with `kubectl kustomize`.

Each overlay must render one RayService that passes the same checks as the Helm chart's (KubeRay
CRD schema, ServeDeploySchema, AppConfig, kubernetes-validate, the Ray autoscaler's view of the
groups, replicas packed onto the worker pods): cpu-demo is configs/embedded.yaml without GPUs,
gpu is configs/gpu-24g.yaml and the same cluster as the chart's default values.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _load_chart_checks():
    """tests/test_helm_chart.py's helpers, imported by path (tests/ is not a package)."""
    name = "omniserve_chart_checks"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_helm_chart.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


checks = _load_chart_checks()
K8S = checks.REPO / "k8s"
OVERLAYS = ["cpu-demo", "gpu"]
PROFILES = {"cpu-demo": "embedded.yaml", "gpu": "gpu-24g.yaml"}
IMAGES = {"cpu-demo": "ghcr.io/omniserve/omniserve-cpu:0.1.0", "gpu": "ghcr.io/omniserve/omniserve-gpu:0.1.0"}


def kustomize(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not installed (apt-get install kubectl): `kubectl kustomize` renders the overlays offline"
        )
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def containers(rs: dict) -> list[tuple[str, dict]]:
    return [(group, spec["template"]["spec"]["containers"][0]) for group, spec in checks.ray_groups(rs)]


def load_sync():
    """k8s/sync_serve_configs.py as a module."""
    spec = importlib.util.spec_from_file_location("omniserve_sync_serve_configs", K8S / "sync_serve_configs.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    return sync


def expected_entries(args: dict) -> dict[str, dict]:
    """{name: entry without name} the overlay must carry for these profile args, computed here:
    each deployment that sets autoscaling_config or num_replicas; a model's autoscaling_config
    as session_autoscaling(plain, admission.scale_on_queue) gives it, the ingress's as written."""
    from deployments.config import AppConfig

    config = AppConfig.model_validate(args)
    count_waiting = (args.get("admission") or {}).get("scale_on_queue", True)
    assert count_waiting is config.admission.scale_on_queue
    sources = [
        (m.deployment_name, raw.get("deployment") or {}, True)
        for m, raw in zip(config.models, args["models"], strict=True)
    ]
    ingress = (args.get("ingress") or {}).get("deployment") or {}
    sources.append((ingress.get("name") or "Ingress", ingress, False))
    out = {}
    for name, dep, model in sources:
        if dep.get("autoscaling_config"):
            out[name] = {
                "autoscaling_config": checks.expected_entry_autoscaling(dep["autoscaling_config"], count_waiting, model)
            }
        elif dep.get("num_replicas") is not None:
            out[name] = {"num_replicas": dep["num_replicas"]}
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_serve_config_is_generated_from_its_profile(overlay):
    sync = load_sync()
    assert sync.OVERLAYS[overlay][0] == PROFILES[overlay]
    current = (K8S / "overlays" / overlay / "serve-config.yaml").read_text()
    assert current == sync.render(overlay), (
        f"k8s/overlays/{overlay}/serve-config.yaml is out of date with configs/{PROFILES[overlay]}: "
        "run .venv/bin/python k8s/sync_serve_configs.py"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_one_valid_rayservice(overlay):
    docs = kustomize(K8S / "overlays" / overlay)
    # The generated ConfigMap is local-config: only the RayService is applied.
    assert [d["kind"] for d in docs] == ["RayService"]
    rs = docs[0]
    serve_config, app = checks.check_rayservice(rs)
    profile = checks.profile_serve_config(PROFILES[overlay])
    assert app["args"] == checks.app_of(profile)["args"], (
        f"run .venv/bin/python k8s/sync_serve_configs.py ({overlay} drifted)"
    )
    assert serve_config["proxy_location"] == profile["proxy_location"]
    assert serve_config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    # The `deployments` entries repeat the args' replica settings, models' in the session-policy
    # form build_app gives Serve: Serve runs what the profile says, policy included.
    entries = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app["deployments"]}
    assert entries == expected_entries(checks.app_of(profile)["args"])
    assert checks.serve_options(app) == checks.code_options(checks.app_of(profile)["args"])
    assert {d["name"] for d in app["deployments"]} == set(checks.code_options(app["args"]))
    for group, container in containers(rs):
        assert container["image"] == IMAGES[overlay], group
        env = {e["name"]: e for e in container["env"]}
        assert env["OMNISERVE_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "omniserve-api-keys",
            "key": "api-keys",
            "optional": True,
        }
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "omniserve-hub-token",
            "key": "token",
            "optional": True,
        }
    assert rs["spec"]["serveService"]["metadata"]["name"] == "omniserve-serve-svc"


def test_sync_writes_the_session_policy_form():
    """k8s/sync_serve_configs.py's entries, for args covering every case: a model's plain
    autoscaling_config through session_autoscaling with count_waiting = admission.scale_on_queue
    (false here, true by default), a model config naming its own policy unchanged, a fixed
    num_replicas and the ingress's autoscaling_config as written. Each validates as Ray's
    AutoscalingConfig."""
    from ray.serve.config import AutoscalingConfig

    from deployments.scaling.options import session_autoscaling

    sync = load_sync()
    own = {"min_replicas": 1, "max_replicas": 2, "policy": checks.CUSTOM_POLICY}
    plain = {"min_replicas": 0, "max_replicas": 2, "downscale_delay_s": 45}
    args = {
        "admission": {"scale_on_queue": False},
        "ingress": {"deployment": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3}}},
        "models": [
            {"id": "a", "role": "llm", "backend": "scripted", "deployment": {"autoscaling_config": plain}},
            {"id": "b", "role": "vad", "backend": "silero", "deployment": {"autoscaling_config": own}},
            {"id": "c", "role": "embeddings", "backend": "sentence-transformers", "source": "x"},
            {
                "id": "d",
                "role": "tts",
                "backend": "piper",
                "source": "x",
                "deployment": {"name": "Voice", "num_replicas": 2},
            },
        ],
    }
    entries = {e["name"]: e for e in sync.replica_entries(args)}
    assert entries == {
        "LLMServer": {"name": "LLMServer", "autoscaling_config": session_autoscaling(plain, count_waiting=False)},
        "VADServer": {"name": "VADServer", "autoscaling_config": own},
        "Voice": {"name": "Voice", "num_replicas": 2},
        "Ingress": {"name": "Ingress", "autoscaling_config": {"min_replicas": 1, "max_replicas": 3}},
    }
    assert entries["LLMServer"]["autoscaling_config"]["policy"]["policy_kwargs"] == {
        "min_replicas": 0,
        "to_zero_delay_s": 45.0,
        "count_waiting": False,
    }
    for entry in entries.values():
        if "autoscaling_config" in entry:
            AutoscalingConfig(**entry["autoscaling_config"])
    del args["admission"]
    llm = {e["name"]: e for e in sync.replica_entries(args)}["LLMServer"]
    assert llm["autoscaling_config"] == session_autoscaling(plain, count_waiting=True)


def test_cpu_demo_runs_without_gpus_in_one_pod():
    rs = kustomize(K8S / "overlays" / "cpu-demo")[0]
    rc = rs["spec"]["rayClusterConfig"]
    assert rc["workerGroupSpecs"] == [] and rc["enableInTreeAutoscaling"] is False
    for group, container in containers(rs):
        limits = container.get("resources", {}).get("limits", {})
        assert not [k for k in limits if k.endswith("gpu")], (group, limits)
    node_types = checks.autoscaler_node_types(rs)
    assert list(node_types) == ["headgroup"] and "GPU" not in node_types["headgroup"]["resources"]
    _, app = checks.check_rayservice(rs)
    assert all(o["ray_actor_options"]["num_gpus"] == 0 for o in checks.serve_options(app).values())
    assert checks.pack(checks.replica_demands(app), node_types, "max") == {"headgroup": 1}


def test_gpu_overlay_matches_the_charts_default_install():
    """The plain manifests and the chart deploy the same cluster and the same Serve config."""
    rs = kustomize(K8S / "overlays" / "gpu")[0]
    chart = checks.only(checks.render(), "RayService")
    assert yaml.safe_load(rs["spec"]["serveConfigV2"]) == yaml.safe_load(chart["spec"]["serveConfigV2"])
    ours, theirs = rs["spec"]["rayClusterConfig"], chart["spec"]["rayClusterConfig"]
    for key in ("rayVersion", "authOptions", "enableInTreeAutoscaling", "autoscalerOptions"):
        assert ours[key] == theirs[key], key
    assert ours["headGroupSpec"]["rayStartParams"] == theirs["headGroupSpec"]["rayStartParams"]
    assert [g["groupName"] for g in ours["workerGroupSpecs"]] == [g["groupName"] for g in theirs["workerGroupSpecs"]]
    for mine, chart_group in zip(ours["workerGroupSpecs"], theirs["workerGroupSpecs"], strict=True):
        for key in ("minReplicas", "maxReplicas", "rayStartParams"):
            assert mine[key] == chart_group[key], (mine["groupName"], key)
        pod, chart_pod = mine["template"]["spec"], chart_group["template"]["spec"]
        assert pod["containers"][0]["resources"] == chart_pod["containers"][0]["resources"], mine["groupName"]
        assert pod.get("nodeSelector") == chart_pod.get("nodeSelector") and pod.get("tolerations") == chart_pod.get(
            "tolerations"
        )
    assert checks.autoscaler_node_types(rs) == checks.autoscaler_node_types(chart)
    assert rs["spec"]["upgradeStrategy"] == chart["spec"]["upgradeStrategy"]


def test_base_is_a_valid_rayservice_skeleton():
    (rs,) = kustomize(K8S / "base")
    checks.assert_crd_valid(rs, "rayservices")
    assert rs["spec"]["serveConfigV2"] == ""  # filled by each overlay
    for group, container in containers(rs):
        assert any(p["name"] == "serve" and p["containerPort"] == 8000 for p in container["ports"]), group
