"""Unit tests: one part at a time, in process, no server processes."""
