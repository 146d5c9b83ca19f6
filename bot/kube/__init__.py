"""bot/kube."""
