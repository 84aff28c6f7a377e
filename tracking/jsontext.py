"""JSON text for the hot paths (COPY rows, bulk-write documents, the inbox): written
with orjson, with the standard library for what orjson refuses (integers past 64 bits,
which JSON and PostgreSQL's jsonb accept); read with the standard library, since orjson
reads such integers as floats and would change them."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def loads(text: str | bytes) -> Any:
    return json.loads(text)
