"""The SMART app as a plug-in: ``register`` contributes its ``/smart`` router to the registry.

The HTTP layer never imports this package (it reads the clinical topic, which the core must not
see); it is listed in the default ``CDS_SERVICE_MODULES`` after the clinical topic, and the app
factory includes every router a plug-in put in ``Registry.routers``. The router is mounted even
when no EHR is allow-listed, so ``/smart`` can say "not configured" instead of a bare 404.
"""

from __future__ import annotations

from cds_service.registry import Registry
from cds_service.settings import Settings
from cds_service.smart.router import build_router


def register(registry: Registry, settings: Settings) -> None:
    """Mount the app's routes (its card pipeline is looked up in ``registry`` per request)."""
    registry.routers.append(build_router(settings))
