"""The active policy bundle."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PrincipalDep, RuntimeDep
from api.schemas import PolicyPublic

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.get("/active", response_model=PolicyPublic)
def active(rt: RuntimeDep, _: PrincipalDep) -> PolicyPublic:
    """Version (content hash) and rules of the policy every decision is made under."""
    spec = rt.policy.spec.model_dump(mode="json")
    return PolicyPublic(version=rt.policy_version, name=rt.policy.name, rules=spec["rules"],
                        defaults=spec["defaults"], scales=spec["scales"])
