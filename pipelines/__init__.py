"""End-to-end pipelines built on :mod:`medimg`, importable from notebooks."""
