"""Operator command-line support for starter.py (Temporal calls, rendering)."""
