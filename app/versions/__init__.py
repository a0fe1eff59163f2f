"""Frozen dataset versions: manifest, numbering, status, and the link to the jobs trained from them."""
