"""Shared pieces of every document: metadata, coordinates, GPU type names."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from placement.model.gpus import KNOWN_GPU_TYPES, is_known_gpu

NAME_PATTERN = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"

# Bounds on every number a document carries: what the store's columns hold (32-bit integers)
# and what the engine can multiply together without leaving the finite floats.
MAX_INT32 = 2**31 - 1
MAX_PRIORITY = 1_000_000_000
MAX_GPUS = 10_000_000  # GPUs of one type at one site, or one workload's in all
MAX_REPLICAS = 10_000
MAX_ITEMS = 1_000  # entries of a list or map in one document
MAX_HOURS = 100_000.0  # about 11 years
MAX_MS = 3_600_000.0  # an hour
MAX_RATE = 1e9  # per second or per hour
MAX_SIZE = 1e12  # GB or KB
MAX_GBPS = 1e6
MAX_USD = 1e12
MAX_USD_PER_UNIT = 1e6  # per GPU-hour, instance-hour or GB
MAX_TEXT = 4096  # characters of any one string
MAX_LABEL_KEY = 253
MAX_LABEL_VALUE = 1024
MAX_LABELS = 64


def check_text(value: str) -> str:
    """Refuse what no column, JSON encoder or Kubernetes object can carry: NUL characters and
    lone UTF-16 surrogates (JSON's "\\ud800" escapes)."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000); remove it")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"contains a lone surrogate at position {exc.start}; send "
                             "valid UTF-8 text") from None
    return value


Text = Annotated[str, AfterValidator(check_text)]  # every free-text field of a document


class Strict(BaseModel):
    """Base for documents: unknown fields are errors, so typos never pass silently; numbers
    are finite and of their own type (true is not 1, "1" is not 1); strings are at most
    MAX_TEXT characters, and free text is `Text` (valid Unicode without NUL)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              str_max_length=MAX_TEXT)


def check_gpu(name: str) -> str:
    if not is_known_gpu(name):
        raise ValueError(
            f"unknown GPU type {name!r}; use one of: {', '.join(KNOWN_GPU_TYPES)}"
        )
    return name


GpuType = Annotated[
    str,
    AfterValidator(check_gpu),
    Field(description="Accelerator name as the cloud price catalogs write it, e.g. H100."),
]
Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="DNS-1123 style name: lower-case letters, digits, '-' and '.'.",
    ),
]

Labels = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=MAX_LABEL_KEY),
                   AfterValidator(check_text)],
         Annotated[str, Field(max_length=MAX_LABEL_VALUE), AfterValidator(check_text)]],
    Field(max_length=MAX_LABELS),
]


class Metadata(Strict):
    """Name and labels, as in Kubernetes objects."""

    name: Name
    labels: Labels = Field(default_factory=dict, description="Free-form key/value labels.")


class Location(Strict):
    """A point on Earth (WGS84 degrees) with an optional human description."""

    lat: float = Field(ge=-90, le=90, description="Latitude in degrees.")
    lon: float = Field(ge=-180, le=180, description="Longitude in degrees.")
    description: Text | None = Field(default=None, max_length=MAX_TEXT)


class Document(Strict):
    """Common shape of every YAML document: kind, optional apiVersion, metadata, spec."""

    apiVersion: Text | None = Field(default=None, max_length=MAX_LABEL_KEY)
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name
