"""Celery app and tasks: the Kurento work of the signaling service."""
