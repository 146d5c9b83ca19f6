"""bot/releases."""
