"""Bench-only peer services, each the plain way to serve the bench model with a given stack."""
