"""Network boundary filter: clients must reach the site; bounded data may not leave its boundary."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.framework import FilterResult, Reasons, literal


class Boundary:
    """Closed networks (plant OT networks, air-gapped zones) limit where work can go."""

    SHAPE_ONLY: ClassVar[bool] = True  # the filter reads only the workload's shape
    NAME: ClassVar[str] = "boundary"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        ci, spec = ctx.ci, ctx.workload.spec
        n_sites = len(ci.site_names)
        ok = np.ones(n_sites, dtype=bool)
        why_not: list[tuple[np.ndarray, str]] = []
        names = {v: k for k, v in ci.boundary_index.items()}
        if spec.latency is not None:
            for client in spec.latency.clients:
                b = int(ci.client_boundary[ci.client_index[client.location]])
                reach = ci.reach[b]
                label = names[b] or "the open network"
                why_not.append((reach, f"clients at {client.location} (in {label}) cannot "
                                       "reach it"))
                ok &= reach
        for ref in spec.datasets:
            b = int(ci.dataset_boundary[ci.dataset_index[ref.name]])
            if b == 0:
                continue
            inside = ci.site_boundary == b
            why_not.append((inside, f"dataset {ref.name} may not leave network boundary "
                                    f"{names[b]}"))
            ok &= inside
        passed = ok[ctx.site]

        def why() -> Reasons:
            if not why_not:
                return Reasons(("",))
            # one template per distinct set of failed reasons among the candidates' sites
            failed = ~np.stack([mask for mask, _ in why_not])[:, ctx.site]
            sets, code = np.unique(failed, axis=1, return_inverse=True)
            return Reasons(["; ".join(literal(text) for (_, text), bad in zip(
                why_not, column, strict=True) if bad) for column in sets.T.tolist()],
                code.reshape(-1).astype(np.int64))

        return FilterResult(passed, why)
