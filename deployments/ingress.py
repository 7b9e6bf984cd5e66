"""The ingress deployment: owns the wire, holds no model, composes model deployments by handle.

It builds the FastAPI app (``deployments.http.create_app``) around an
:class:`~deployments.state.IngressState` and imports nothing from ``deployments.routes``.
"""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import AppConfig
from deployments.http import create_app
from deployments.state import IngressState


@serve.deployment
@serve.ingress()
class Ingress:
    """FastAPI ingress (``@serve.ingress`` with the app built per replica).

    Args:
        config: :class:`AppConfig` as a dict.
        handles: ``{model id: DeploymentHandle}`` (bound deployments at build time).
        admission: the admission service's handle (``None`` when admission is disabled).
    """

    def __init__(self, config: dict, handles: dict[str, DeploymentHandle], admission: DeploymentHandle | None = None):
        self.config = AppConfig.model_validate(config)
        try:
            ctx = serve.get_replica_context()
            app_name, replica_id = ctx.app_name, ctx.replica_id.to_full_id_str()
        except Exception:  # not inside a replica
            app_name, replica_id = None, None
        self.state = IngressState(self.config, handles, app_name, admission, replica_id)

    def __serve_build_asgi_app__(self):
        return create_app(self.state)
