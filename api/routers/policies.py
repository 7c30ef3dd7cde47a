"""The active policy bundle."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PrincipalDep, RuntimeDep
from api.errors import AUTH, responses
from api.schemas import PolicyPublic, ReloadPublic

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.get("/active", response_model=PolicyPublic, operation_id="policies-active",
            responses=responses(*AUTH))
def active(rt: RuntimeDep, _: PrincipalDep) -> PolicyPublic:
    """Version and rules of the policy every decision is made under, and the last reload of
    the GitOps directory (a failed one says why; the previous bundle kept serving)."""
    spec = rt.policy.spec.model_dump(mode="json")
    status = rt.reload
    return PolicyPublic(
        version=rt.policy_version, name=rt.policy.name, rules=spec["rules"],
        defaults=spec["defaults"], scales=spec["scales"],
        source=str(rt.config_dir) if rt.config_dir else None,
        reload=ReloadPublic(**vars(status)) if status else None)
