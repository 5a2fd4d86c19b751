"""Core library of the statewide rollout: settings, database, communities, embedded stack.

Nothing in this package imports Temporal; workflows and activities build on it.
"""
