"""Built-in plugin module (placeholder until its issue lands)."""
