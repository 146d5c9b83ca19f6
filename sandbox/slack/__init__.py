"""sandbox/slack."""
