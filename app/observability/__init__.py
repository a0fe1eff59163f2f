"""Prometheus metrics of the service: what the database, Redis and this process know."""
