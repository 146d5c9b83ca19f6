"""sandbox/controlplane."""
