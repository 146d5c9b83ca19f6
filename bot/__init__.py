"""release-bot: release to Kubernetes from Slack."""
