"""JSON encoding for the store and the API: orjson, several times faster than the standard
library on the large explanations every decision carries."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """UTF-8 JSON bytes (UUIDs and datetimes as ISO strings, NaN as null)."""
    return orjson.dumps(value, option=_OPTIONS)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value, option=_OPTIONS).decode()


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


def fragment(value: Any) -> Any:
    """`value` encoded now, as a piece that later encodings embed without re-encoding: a
    decision's explanation is encoded once for the store and the API response alike."""
    return orjson.Fragment(orjson.dumps(value, option=_OPTIONS))
