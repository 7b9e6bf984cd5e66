"""The application graph honours its configuration: Serve reads back exactly the options given."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deployments.app import build_app
from deployments.config import AppConfig
from tests.conftest import profile_args

SCRIPTED_LLM = {
    "id": "scripted-llm",
    "role": "llm",
    "backend": "scripted",
    "options": {"default": "ok"},
    "deployment": {
        "num_gpus": 0.5,
        "num_cpus": 0,
        "max_ongoing_requests": 7,
        "autoscaling_config": {"min_replicas": 2, "max_replicas": 3, "target_ongoing_requests": 3},
    },
}


def test_profiles_validate():
    for name in ("embedded", "gpu-24g", "gpu-multinode"):
        cfg = AppConfig.model_validate(profile_args(name))
        assert cfg.cascade_model("llm") is not None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a["models"][0].update(backend="vllm"), "unknown llm backend"),
        (lambda a: a["models"][0].pop("source"), "needs a source"),
        (lambda a: a["models"][0]["deployment"].update(num_gpus=-1), "greater than or equal"),
        (lambda a: a["models"][0]["deployment"].update(num_replicas=2), "either num_replicas or autoscaling_config"),
        (
            lambda a: a["models"][0]["deployment"]["autoscaling_config"].update(min_replicas=5, max_replicas=1),
            "min_replicas",
        ),
        (lambda a: a["models"][1].update(aliases=["gpt-4o-mini"]), "used twice"),
        (lambda a: a.update(cascade={"id": "x", "llm": "all-minilm-l6-v2"}), "is not a llm model"),
        (lambda a: a.update(unknown_key=1), "Extra inputs"),
    ],
)
def test_invalid_configuration_rejected(mutate, message):
    args = profile_args("embedded")
    mutate(args)
    with pytest.raises(ValidationError, match=message):
        AppConfig.model_validate(args)


def test_graph_honours_gpu_fraction_and_autoscaling(ray_cluster):
    """On a cluster with one fake GPU, an LLM deployment with ``num_gpus: 0.5`` and an
    autoscaling config yields replicas with exactly those settings (two replicas fill the GPU)."""
    import ray
    from ray import serve

    args = {
        "cascade": {"id": "graph-test"},
        "ingress": {"deployment": {"num_replicas": 1, "num_cpus": 0, "max_ongoing_requests": 5}},
        "models": [SCRIPTED_LLM],
    }
    assert ray.available_resources().get("GPU") == pytest.approx(1.0)
    serve.run(build_app(args), name="graph", route_prefix="/graph-test")
    try:
        details = serve.context._get_global_client().get_serve_details()
        deps = details["applications"]["graph"]["deployments"]
        llm = deps["LLMServer"]["deployment_config"]
        assert llm["ray_actor_options"]["num_gpus"] == 0.5
        assert llm["max_ongoing_requests"] == 7
        auto = llm["autoscaling_config"]
        assert (auto["initial_replicas"], auto["max_replicas"], auto["target_ongoing_requests"]) == (2, 3, 3)
        # the configured floor is the session policy's (Serve's own is 0, so that an unload reaches zero)
        assert auto["min_replicas"] == 0 and auto["policy"]["policy_kwargs"]["min_replicas"] == 2
        assert deps["Ingress"]["deployment_config"]["max_ongoing_requests"] == 5
        assert serve.status().applications["graph"].deployments["LLMServer"].replica_states == {"RUNNING": 2}
        replicas = deps["LLMServer"]["replicas"]
        assert len(replicas) == 2 and all(r["state"] == "RUNNING" for r in replicas)
        # two replicas of 0.5 GPU hold the whole (fake) GPU
        assert ray.available_resources().get("GPU", 0) == pytest.approx(0.0)
    finally:
        serve.delete("graph")
