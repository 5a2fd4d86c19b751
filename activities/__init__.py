"""Temporal activities: thin wrappers, one concern per module, over the rollout core.

They receive and return the small DTOs of rollout.payloads and hold no orchestration logic.
"""
