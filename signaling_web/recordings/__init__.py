"""Recording a publication: start, list, read, stop (API key, or a moderator of the session)."""
