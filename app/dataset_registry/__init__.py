"""Registered DICE datasets (the HTTP side of app/datasets): registration, listing, annotation uploads."""
