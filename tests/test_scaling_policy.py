"""The queue-driven autoscaling policy's parts (``deployments.scaling``), without Serve: the target
it computes and what ``build_app`` hands Serve, validated by Serve's own ``AutoscalingConfig``, and
the bounds it publishes (Serve's ``AutoscalingContext``, the session cluster's KV). The policy
running inside Serve's controller is tested in tests/test_queue_scaling.py."""

from __future__ import annotations

import time

import pytest
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from deployments.scaling.options import POLICY_PATH, session_autoscaling, unloadable
from deployments.scaling.policy import SessionAutoscalingPolicy, target_replicas
from deployments.scaling.store import BOUNDS_TTL_S, Demand, read_bounds


@pytest.mark.parametrize(
    ("request_target", "demand", "floor", "count_waiting", "expected"),
    [
        (0.2, None, 1, True, 1),  # no realtime role: Serve's target, at least the floor
        (3.4, None, 1, True, 3.4),  # REST load still scales as without the policy
        (0.0, Demand(sessions=1, waiting=1, sessions_per_replica=1), 1, True, 2),  # the waiter counts
        (0.0, Demand(sessions=1, waiting=1, sessions_per_replica=1), 1, False, 1),  # switched off
        (0.0, Demand(sessions=5, waiting=0, sessions_per_replica=4), 1, True, 2),  # held sessions: ceil(5/4)
        (0.0, Demand(sessions=2, waiting=7, sessions_per_replica=4), 0, True, 3),  # ceil(9/4)
        (0.0, Demand(sessions=0, waiting=0, sessions_per_replica=4), 0, True, 0),  # unloaded and idle: zero
        (5.0, Demand(sessions=1, waiting=0, sessions_per_replica=4), 0, True, 5.0),  # requests dominate
        (0.0, Demand(sessions=3, waiting=1, sessions_per_replica=0), 1, True, 1),  # 0 per replica: not a role
    ],
)
def test_target_replicas(request_target, demand, floor, count_waiting, expected):
    assert target_replicas(request_target, demand, floor, count_waiting) == expected


def test_build_app_hands_serve_the_policy_and_keeps_the_configured_floor_for_it():
    configured = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4, "downscale_delay_s": 30}
    out = session_autoscaling(configured, count_waiting=True)
    AutoscalingConfig(**out)  # Serve accepts it
    assert out["min_replicas"] == 0 and out["initial_replicas"] == 1 and out["max_replicas"] == 2
    assert out["downscale_to_zero_delay_s"] == 0 and out["downscale_delay_s"] == 30
    assert out["policy"] == {
        "policy_function": POLICY_PATH,
        "policy_kwargs": {"min_replicas": 1, "to_zero_delay_s": 30.0, "count_waiting": True},
    }
    assert configured == {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4, "downscale_delay_s": 30}
    # scale to zero by configuration: the configured to-zero delay moves into the policy
    zero = session_autoscaling(
        {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1, "downscale_to_zero_delay_s": 12},
        count_waiting=False,
    )
    AutoscalingConfig(**zero)
    assert zero["initial_replicas"] == 0 and zero["policy"]["policy_kwargs"] == {
        "min_replicas": 0,
        "to_zero_delay_s": 12.0,
        "count_waiting": False,
    }
    # Serve's default downscale delay when none is configured
    assert session_autoscaling({"max_replicas": 3})["policy"]["policy_kwargs"]["to_zero_delay_s"] == 600.0


def test_a_policy_of_its_own_is_left_alone_and_cannot_be_unloaded():
    own = {"max_replicas": 2, "policy": {"policy_function": "mypkg.policy:scale"}}
    assert session_autoscaling(own) == own
    assert not unloadable(own) and not unloadable(None) and unloadable({"max_replicas": 2})


def _context(app: str, deployment: str, autoscaling_config: dict) -> AutoscalingContext:
    """Serve's own ``AutoscalingContext`` for one idle tick of a deployment with one replica."""
    return AutoscalingContext(
        deployment_id=None,
        deployment_name=deployment,
        app_name=app,
        current_num_replicas=1,
        target_num_replicas=1,
        running_replicas=[],
        total_num_requests=0.0,
        total_queued_requests=0.0,
        aggregated_metrics={},
        raw_metrics={},
        capacity_adjusted_min_replicas=0,
        capacity_adjusted_max_replicas=autoscaling_config["max_replicas"],
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=time.time(),
        config=AutoscalingConfig(**autoscaling_config),
    )


def test_the_policy_publishes_the_bounds_of_the_live_config(ray_cluster):
    """The policy publishes the floor it keeps and the ``max_replicas`` of the config Serve hands
    it, which a ``serveConfigV2`` edit may have raised since the app's ``args`` were written
    (here 2 in the args, 4 live); the admin model records read this record. Ray's internal KV
    is real (the session's cluster)."""
    written = session_autoscaling({"min_replicas": 1, "max_replicas": 2})
    live = {**written, "max_replicas": 4}  # what Serve applies after the operator's edit
    policy = SessionAutoscalingPolicy(**live["policy"]["policy_kwargs"])
    desired, _ = policy(_context("bounds-test", "LLMServer", live))
    assert desired == 1  # idle: the configured floor
    assert read_bounds("bounds-test", "LLMServer", time.time()) == (1, 4)
    # a stale record (the policy stopped driving the deployment) is not shown
    assert read_bounds("bounds-test", "LLMServer", time.time() + BOUNDS_TTL_S + 1) is None
    assert read_bounds("bounds-test", "EmbeddingServer", time.time()) is None
