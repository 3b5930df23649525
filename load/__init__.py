"""The load and fault test (``python -m load.loadtest``) and its fault-injecting FHIR proxy."""
