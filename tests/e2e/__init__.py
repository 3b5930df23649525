"""End-to-end tests: the real server process over HTTP with real SEKMET, Postgres and Redis."""
