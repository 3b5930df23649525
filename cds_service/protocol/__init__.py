"""CDS Hooks wire protocol: models, response invariants, errors. Knows nothing of fasciculations."""
