"""Regenerate the overlays' Serve configs (k8s/overlays/*/serve-config.yaml) from the profiles.

    .venv/bin/python k8s/sync_serve_configs.py           # rewrite the files
    .venv/bin/python k8s/sync_serve_configs.py --check   # exit 1 if one is out of date

Each overlay's serve-config.yaml is its profile (configs/*.yaml) with two changes for Kubernetes:
http_options 0.0.0.0:8000 (the port of KubeRay's serve Service) and `deployments` entries that
repeat the args' replica settings (autoscaling_config or num_replicas of every deployment that
sets them), so that replica bounds can later be edited without restarting replicas (see
the README cluster guide, "Scale"; the Helm chart renders the same entries). A model's
autoscaling_config is written as build_app hands it to Serve, through
deployments.scaling.options.session_autoscaling (an entry replaces the code's whole
autoscaling_config: a plain one would drop the session policy); the ingress's stays plain.
kustomize cannot read files outside its directory, hence the copies; tests/test_kustomize.py
fails when they drift.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = {
    "cpu-demo": ("embedded.yaml", "the embedded default profile in one CPU pod (docker/Dockerfile.cpu image)"),
    "gpu": ("gpu-24g.yaml", "the whole stack on one 24 GB GPU worker pod, ingress and VAD on a CPU pod"),
}
IMPORT_PATH = "deployments.app:build_app"
HTTP_OPTIONS = {"host": "0.0.0.0", "port": 8000}


def replica_entries(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Serve `deployments` entries with the replica settings the args set explicitly: a model's
    autoscaling_config in the form build_app gives Serve (``session_autoscaling``, with
    ``count_waiting`` = ``admission.scale_on_queue``), the ingress's as written."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from deployments.config import DEFAULT_DEPLOYMENT_NAMES, AppConfig
    from deployments.scaling.options import session_autoscaling

    count_waiting = AppConfig.model_validate(args).admission.scale_on_queue
    sources = [
        (
            (m.get("deployment") or {}).get("name") or DEFAULT_DEPLOYMENT_NAMES[m["role"]],
            m.get("deployment") or {},
            True,
        )
        for m in args.get("models") or []
    ]
    ingress = (args.get("ingress") or {}).get("deployment") or {}
    sources.append((ingress.get("name") or "Ingress", ingress, False))
    entries = []
    for name, deployment, is_model in sources:
        if deployment.get("autoscaling_config"):
            config = copy.deepcopy(deployment["autoscaling_config"])
            if is_model:
                config = session_autoscaling(config, count_waiting=count_waiting)
            entries.append({"name": name, "autoscaling_config": config})
        elif deployment.get("num_replicas") is not None:
            entries.append({"name": name, "num_replicas": deployment["num_replicas"]})
    return entries


def render(overlay: str) -> str:
    """The serve-config.yaml text of an overlay."""
    profile, what = OVERLAYS[overlay]
    config = yaml.safe_load((REPO / "configs" / profile).read_text())
    config["http_options"] = {**(config.get("http_options") or {}), **HTTP_OPTIONS}
    apps = []
    for app in config["applications"]:
        if app.get("import_path") == IMPORT_PATH:
            entries = {e["name"]: e for e in replica_entries(app.get("args") or {})}
            entries.update({e["name"]: e for e in app.get("deployments") or []})  # the profile's own win
            app = {
                **{k: v for k, v in app.items() if k not in ("args", "deployments")},
                "deployments": list(entries.values()),
                "args": app.get("args") or {},
            }
        apps.append(app)
    config["applications"] = apps
    header = (
        f"# omniserve {overlay} overlay: {what}.\n"
        f"# GENERATED from configs/{profile} by k8s/sync_serve_configs.py: edit the profile, then run it.\n"
        "# Same Serve config as the profile except http_options "
        f"({HTTP_OPTIONS['host']}:{HTTP_OPTIONS['port']}, the target of\n"
        "# the Service omniserve-serve-svc) and `deployments` entries repeating the args' replica\n"
        "# settings, models' in the session-policy form build_app gives Serve (edit Serve's fields\n"
        "# there, e.g. max_replicas, to rescale without restarting replicas; see the README).\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, width=110, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report overlays that are out of date")
    check = parser.parse_args(argv).check
    stale = []
    for overlay in OVERLAYS:
        path = REPO / "k8s" / "overlays" / overlay / "serve-config.yaml"
        text = render(overlay)
        if not path.exists() or path.read_text() != text:
            stale.append(str(path.relative_to(REPO)))
            if not check:
                path.write_text(text)
    if stale:
        print(("out of date: " if check else "rewrote: ") + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
