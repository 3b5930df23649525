"""CDS Hooks 2.0 service for the work-up of muscle fasciculations."""

__version__ = "0.1.0"
