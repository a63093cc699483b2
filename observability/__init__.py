"""Logs and metrics shared by the web tier and the workers."""
