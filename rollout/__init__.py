"""Core library of the statewide rollout: contract names, payloads, settings, the
database, the Places client, and each phase's logic under rollout/phases/.

Nothing in this package imports Temporal; workflows and activities build on it.
"""
