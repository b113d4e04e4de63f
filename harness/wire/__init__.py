"""Talking to an engine over HTTP: requests, the evidence client, SSE streaming, Prometheus text."""
