.PHONY: bootstrap check run sandbox fmt

# Set up (system packages, control-plane build, venv) and run every check and test.
check: bootstrap
	./scripts/check

bootstrap:
	./scripts/bootstrap

# The main job: the bot against Slack when SLACK_* credentials are set, else the local sandbox
# (control plane with the hexo app, Slack simulator page, and the bot).
run: bootstrap
	./scripts/run

sandbox: bootstrap
	.venv/bin/release-bot sandbox

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .
