.PHONY: bootstrap check test lint sandbox fmt

# Set up (system packages, control-plane build, venv) and run every check and test.
check: bootstrap
	./scripts/check

bootstrap:
	./scripts/bootstrap

# Run the local sandbox: control plane with the hexo app, Slack simulator page, and the bot.
sandbox: bootstrap
	.venv/bin/release-bot sandbox

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .
