"""What ``build_app`` does to an autoscaled deployment's ``autoscaling_config`` so that
:class:`~.policy.SessionAutoscalingPolicy` drives it."""

from __future__ import annotations

from typing import Any

#: Import path Serve's controller loads the policy from (``AutoscalingPolicy.policy_function``).
POLICY_PATH = "deployments.scaling.policy:SessionAutoscalingPolicy"
#: Serve's default ``downscale_delay_s`` (``ray.serve.config.AutoscalingConfig``).
SERVE_DOWNSCALE_DELAY_S = 600.0


def session_autoscaling(autoscaling_config: dict[str, Any], count_waiting: bool = True) -> dict[str, Any]:
    """The ``autoscaling_config`` Serve receives for a model deployment.

    The configured ``min_replicas`` and the delay before scaling to zero move into the policy's
    keyword arguments; Serve gets ``min_replicas: 0`` (so that an unload can reach zero),
    ``downscale_to_zero_delay_s: 0`` (the policy applies the configured one itself) and
    ``initial_replicas`` equal to the configured floor (so that the application starts as
    before). Every other field (``max_replicas``, ``target_ongoing_requests``, delays, factors) is
    Serve's, unchanged.

    A configuration that names its own ``policy`` is returned as it is: that deployment is
    scaled by its own policy, and cannot be unloaded by the admin routes.

    Args:
        autoscaling_config: Ray Serve's ``AutoscalingConfig`` as a dict (already validated).
        count_waiting: whether waiting realtime sessions count (``admission.scale_on_queue``).
    """
    if "policy" in autoscaling_config:
        return dict(autoscaling_config)
    out = dict(autoscaling_config)
    floor = int(out.get("min_replicas", 1))
    to_zero = out.pop("downscale_to_zero_delay_s", None)
    if to_zero is None:
        to_zero = out.get("downscale_delay_s", SERVE_DOWNSCALE_DELAY_S)
    out.setdefault("initial_replicas", floor)
    out.update(
        min_replicas=0,
        downscale_to_zero_delay_s=0.0,
        policy={
            "policy_function": POLICY_PATH,
            "policy_kwargs": {"min_replicas": floor, "to_zero_delay_s": float(to_zero), "count_waiting": count_waiting},
        },
    )
    return out


def unloadable(autoscaling_config: dict[str, Any] | None) -> bool:
    """Whether a deployment configured with this ``autoscaling_config`` (as written, before
    :func:`session_autoscaling`) can be unloaded: the session policy drives it. A fixed
    ``num_replicas`` (``None`` here) or a policy of its own cannot."""
    return autoscaling_config is not None and "policy" not in autoscaling_config
