"""``GET /v1/models`` and ``GET /v1/models/{model}``: OpenAI's ``ListModelsResponse`` and ``Model``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Model(BaseModel):
    """One served id: ``created`` in Unix seconds, ``owned_by`` the publisher."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ListModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
