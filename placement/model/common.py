"""Shared pieces of every document: metadata, coordinates, GPU type names."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from placement.gpus import KNOWN_GPU_TYPES, is_known_gpu

NAME_PATTERN = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"


class Strict(BaseModel):
    """Base for documents: unknown fields are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_gpu(name: str) -> str:
    if not is_known_gpu(name):
        raise ValueError(
            f"unknown GPU type {name!r}; use one of: {', '.join(KNOWN_GPU_TYPES)}"
        )
    return name


GpuType = Annotated[
    str,
    AfterValidator(_check_gpu),
    Field(description="Accelerator name as the cloud price catalogs write it, e.g. H100."),
]
Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="DNS-1123 style name: lower-case letters, digits, '-' and '.'.",
    ),
]


class Metadata(Strict):
    """Name and labels, as in Kubernetes objects."""

    name: Name
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form key/value labels.")


class Location(Strict):
    """A point on Earth (WGS84 degrees) with an optional human description."""

    lat: float = Field(ge=-90, le=90, description="Latitude in degrees.")
    lon: float = Field(ge=-180, le=180, description="Longitude in degrees.")
    description: str | None = None


class Document(Strict):
    """Common shape of every YAML document: kind, optional apiVersion, metadata, spec."""

    apiVersion: str | None = None
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name
