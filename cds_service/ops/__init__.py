"""Side effects of a request and of the process: the one ``CallRecord`` per request
(``record.py``), Prometheus metrics, JSON logging, the audit trail, readiness and memory tuning.
Nothing here decides an answer; storage owns all SQL."""
