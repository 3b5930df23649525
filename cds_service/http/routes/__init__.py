"""One router per audience: discovery, hook calls (services), feedback, evidence pages, and the
operations endpoints (health, readiness, metrics, analytics)."""
