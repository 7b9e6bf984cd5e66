"""Validate bodies against OpenAI's published OpenAPI description (../shared/schemas/openai).

OpenAPI 3.1 schemas are JSON Schema 2020-12 except for the 3.0 leftover ``nullable: true``,
which is rewritten to allow ``null`` before validation.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OPENAPI = SHARED / "schemas" / "openai" / "openapi.yaml"


def _fix_nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _fix_nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
            t = node.get("type")
            if isinstance(t, str):
                node["type"] = [t, "null"]
            elif "type" not in node:
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_fix_nullable(v) for v in node]
    return node


@functools.lru_cache(maxsize=1)
def _document() -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return _fix_nullable(yaml.load(OPENAPI.read_text(), Loader=loader))


def validate(instance: Any, schema_name: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches
    ``#/components/schemas/<schema_name>``."""
    doc = _document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)
