"""Durable state: feedback from EHRs and the registry of issued cards (SQLAlchemy 2 async)."""
