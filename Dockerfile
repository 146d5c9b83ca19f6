# release-bot container image.
#
# Two stages: the builder installs the project (not editable) into a virtual environment at
# /opt/venv; the runtime stage copies only that venv onto a fresh slim Python, so no compiler, pip
# cache or source tree ships. The image runs as a numeric non-root user and never writes outside
# /tmp, so it works with `readOnlyRootFilesystem: true` (the Helm chart mounts an emptyDir at /tmp).
#
#   docker build -t release-bot .
#   docker run --rm -p 3000:3000 -e SLACK_BOT_TOKEN=... -e SLACK_SIGNING_SECRET=... \
#     -e KUBECONFIG=/kube/config -v ~/.kube:/kube:ro -v ./catalog.yaml:/etc/release-bot/catalog.yaml:ro \
#     --read-only --tmpfs /tmp release-bot

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Metadata first, then the packages setuptools installs (bot, commands, sandbox: see pyproject.toml).
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY sandbox ./sandbox
# pip byte-compiles the installed modules, so the read-only runtime never needs to write .pyc files.
RUN pip install --no-cache-dir . \
    && pip check


FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="release-bot" \
      org.opencontainers.image.description="Slack chat-ops bot: rolling, canary and blue-green releases to Kubernetes"

# A fixed numeric UID/GID: Kubernetes can only verify runAsNonRoot for a numeric user.
ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" release-bot \
    && useradd --system --uid "${UID}" --gid "${GID}" --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin release-bot

COPY --from=builder /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: no .pyc writes on a read-only root filesystem. HOME and TMPDIR point at
# /tmp, the only writable place. RELEASE_BOT_HOST=0.0.0.0: inside a container the bot must listen on
# the pod IP for the Service, Ingress and kubelet probes to reach it (outside containers the default
# stays 127.0.0.1).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    RELEASE_BOT_HOST=0.0.0.0 \
    RELEASE_BOT_PORT=3000 \
    RELEASE_BOT_CATALOG=/etc/release-bot/catalog.yaml

WORKDIR /tmp
USER 10001:10001
EXPOSE 3000

# No curl in the slim image: Python's urllib asks /healthz; any error or non-2xx exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('RELEASE_BOT_PORT', '3000') + '/healthz', timeout=4)"]

# Exec form: release-bot is PID 1 and receives SIGTERM itself, then drains its release tasks
# (RELEASE_BOT_DRAIN_SECONDS) before exiting.
ENTRYPOINT ["release-bot"]
CMD ["serve"]
