"""Built-in tools plugin (filled in by the tools work)."""
