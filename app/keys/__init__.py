"""API keys: created, listed and revoked from the CLI; checked on every request by app.core.auth."""
