"""The dashboard: server-rendered pages under `/` (Jinja2 + htmx + uPlot, vendored under static/vendor/).

Pages call the same service functions the REST routers call, and the live parts read the same per-job
event log through the same stream code (app/training/stream.py).
"""
