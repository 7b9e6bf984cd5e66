"""One FastAPI router per route family; each route reads: parse -> call handle -> shape response."""

from __future__ import annotations

from fastapi import Request

from deployments.ingress import IngressState


def get_state(request: Request) -> IngressState:
    """Route dependency: the ingress state the app was built around."""
    return request.app.state.omni
