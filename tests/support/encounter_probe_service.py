"""A test-only variant of the probe service whose prefetch has a token clients often cannot fill
(``{{context.encounterId}}``, absent on a chart opened outside an encounter); loaded with
CDS_SERVICE_MODULES=tests.support.encounter_probe_service. Used to observe what a third-party client
sends for such a template (Medplum: ``null``; the Sandbox: leaves the key out)."""

from __future__ import annotations

from cds_service.data.prefetch import PrefetchSpec
from cds_service.protocol.models import Hook
from cds_service.registry import Registry, ServiceDefinition
from cds_service.settings import Settings
from tests.support.probe_service import probe

PREFETCH = (
    PrefetchSpec("patient", "Patient/{{context.patientId}}", required=True),
    PrefetchSpec("encounter", "Encounter/{{context.encounterId}}", required=False),
)


def register(registry: Registry, settings: Settings) -> None:
    registry.add(
        ServiceDefinition(
            id="encounter-probe",
            hook=Hook.PATIENT_VIEW,
            title="Encounter probe",
            description="Reports which prefetch keys it received and how (one needs context.encounterId)",
            handler=probe,
            prefetch=PREFETCH,
            usage_requirements="Test only",
        )
    )
