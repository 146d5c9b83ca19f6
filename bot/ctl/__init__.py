"""`release-bot ctl`: the second front end. Releases from a terminal or a CI job, through the same engine,
records and locks as the Slack bot, with the caller's own Kubernetes rights."""
