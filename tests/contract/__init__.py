"""Contract tests: the service against the CDS Hooks 2.0 specification, FHIR R4 and third-party clients."""
