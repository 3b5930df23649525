"""Tests of the client tools (cds_tools: EHR simulator, conformance checker, harness), the benchmark and the load test."""
