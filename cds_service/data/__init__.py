"""Getting the FHIR data a service needs: prefetch as given, the rest from fhirServer."""
