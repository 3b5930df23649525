"""Client-side tools of the project, kept out of the server package: the EHR simulator and the
conformance checker (``ehr/``), the fixture loader (``fixtures.py``) and the process harness
(``harness.py``) shared by the tests, the benchmark and the load test.

They speak only HTTP and the CDS Hooks wire format: from the service they import nothing but
``cds_service.protocol`` (and the prefetch-template grammar of ``cds_service.data.templates``),
which the ``import-linter`` contracts in pyproject.toml check.
"""
