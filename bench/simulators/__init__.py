"""Simulator commands for ``surrogate loop``, run as processes of their own."""
