"""Alert-burden report: run the service's pipeline over a population before go-live (issue 17, section 4).

``cds-fasciculation burden DIR [--inject-fasciculation]`` reads FHIR Bundles or FHIR Bulk NDJSON,
plays the EHR (the full prefetch for the service's discovery templates, optionally cut to pages),
runs every patient through the same gather + handler pipeline as a hook call (``adapter.py``, the one
place that touches the service) in a process pool, and measures what clinicians would see: cards per
in-scope patient, firing rate per rule and indicator, cards hidden by the card budget,
data-completeness failures, time per patient, and the issue's targets (``measure.py``). The report is
a terminal table, a JSON file and a self-contained HTML page with inline SVG charts (``report.py``).
"""
