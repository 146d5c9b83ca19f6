"""The app catalog: which apps may be released, how, and by whom.

Loaded once from YAML at start-up and validated by pydantic; any mistake stops the bot with a message
that names the app and field. Pure: no I/O libraries beyond reading the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.errors import ConfigError
from bot.freeze import Window
from commands.intents import Strategy

_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_DNS1123 = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
_INT_OR_PERCENT = re.compile(r"[0-9]+|[0-9]{1,3}%")


class Action(StrEnum):
    """What a permission rule grants. Every command maps to exactly one of these."""

    VIEW = "view"  # status, history
    RELEASE = "release"  # start a release, pause, resume
    PROMOTE = "promote"  # promote a canary step, switch blue-green traffic, finish
    ROLLBACK = "rollback"  # roll back, abort, undo to a revision
    LOCK = "lock"  # lock and unlock an app (the `release` rule unless `lock` is given)
    APPROVE = "approve"  # approve or deny a release waiting for approval (`approvals.from`)
    BREAK_GLASS = "break-glass"  # release past approvals and freezes, with a reason (`break_glass`)
    OVERRIDE = "override"  # release, promote or switch during a freeze, with a reason (`freeze_override`)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Model):
    """Who may do one action. A person matches by user id or user-group membership; when channels
    are listed, the command must also come from one of them. An empty rule allows nobody."""

    users: tuple[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,20}$")], ...] = ()
    usergroups: tuple[Annotated[str, Field(pattern=r"^S[A-Z0-9]{2,20}$")], ...] = ()
    channels: tuple[Annotated[str, Field(pattern=r"^[CGD][A-Z0-9]{2,20}$")], ...] = ()


class People(_Model):
    """Named people: by user id or user-group membership."""

    users: tuple[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,20}$")], ...] = ()
    usergroups: tuple[Annotated[str, Field(pattern=r"^S[A-Z0-9]{2,20}$")], ...] = ()

    def as_rule(self) -> Rule:
        return Rule(users=self.users, usergroups=self.usergroups)


class Permissions(_Model):
    view: Rule | None = None  # None: anyone allowed any other action may view
    release: Rule = Rule()
    promote: Rule = Rule()
    rollback: Rule = Rule()
    lock: Rule | None = None  # None: whoever may release may lock and unlock

    def rule(self, action: Action) -> Rule:
        if action is Action.VIEW and self.view is None:
            return Rule(
                users=tuple({*self.release.users, *self.promote.users, *self.rollback.users}),
                usergroups=tuple(
                    {*self.release.usergroups, *self.promote.usergroups, *self.rollback.usergroups}
                ),
            )
        if action is Action.LOCK:
            return self.lock or self.release
        picked: Rule | None = getattr(self, action.value, None)
        return picked or Rule()


class Approvals(_Model):
    """A release waits for `required` distinct approvers named in `from` before it touches the cluster."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    required: int = Field(default=1, ge=1, le=10)
    from_: People = Field(alias="from")
    allow_self: bool = False  # the requester's own approval counts
    expire_minutes: float = Field(default=60, gt=0)
    promote: bool = False  # Promote and Switch traffic also need an approver other than the requester

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if not self.from_.users and not self.from_.usergroups:
            raise ValueError("approvals.from names nobody: list `users` or `usergroups`")
        return self


class BreakGlass(People):
    """Who may release past approvals and freezes (`--break-glass "reason"`), and where it is announced."""

    announce_channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]{2,20}$")


class Rolling(_Model):
    max_surge: int | str = 1
    max_unavailable: int | str = 0

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _int_or_percent(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("must be 0 or more")
            return v
        if not _INT_OR_PERCENT.fullmatch(v):
            raise ValueError("must be a number or a percentage like 25%")
        return int(v) if not v.endswith("%") else v


class Canary(_Model):
    # Replicas running the new version at each pause, as a count or a percentage of the Deployment's
    # replicas. Empty: one canary pod, then everything on Promote (the guide's set-image + pause).
    steps: tuple[int | str, ...] = ()
    analysis_minutes: float = Field(default=0, ge=0)  # Promote refused until healthy this long
    auto_promote: bool = False  # promote by itself after analysis_minutes of health

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: tuple[int | str, ...]) -> tuple[int | str, ...]:
        for s in v:
            if isinstance(s, int):
                if s < 1:
                    raise ValueError("a step is 1 or more pods")
            elif not re.fullmatch(r"\d{1,3}%", s) or not 0 < int(s[:-1]) <= 100:
                raise ValueError(f"step {s!r} must be a pod count or a percentage 1%..100%")
        return v


class Retire(StrEnum):
    SCALE_DOWN = "scale-down"
    DELETE = "delete"


class BlueGreen(_Model):
    grace_seconds: float = Field(default=300, ge=0)  # old colour kept for instant rollback this long
    retire: Retire = Retire.SCALE_DOWN
    max_replicas: int | None = Field(default=None, ge=1)  # refuse when both colours exceed this
    # The green's name. `{colour}` alternates `blue` and `green`, so no Deployment name claims a
    # version: a later rolling release on `hexo-green` keeps its name true. `{version}` (the guide's
    # `hexo-v2.0`) is still accepted, but a rolling or canary release on such a colour is refused.
    name_template: str = "{deployment}-{colour}"


class Promotion(_Model):
    """How releases reach this environment from another (`/release promote <app> --from E --to F`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    # Only what comes through this environment may be released here (its name, e.g. `staging`; the
    # catalog turns it into the app's name there, `hexo-staging`).
    from_: str | None = Field(default=None, alias="from", pattern=_NAME)
    # What a promotion to this environment needs: the source ran the image healthily this long.
    soak_minutes: float = Field(default=0, ge=0)


DEFAULT_CLUSTER = "default"  # the cluster of the process's own settings (KUBECONFIG, or in-cluster)


class ClusterRef(_Model):
    """How to reach one cluster of `clusters:`: a kubeconfig file and/or one of its contexts, or the
    pod's own ServiceAccount (`in_cluster: true`). A `context` without `kubeconfig` is looked up in the
    process's own kubeconfig (the bot's KUBECONFIG; for `release-bot ctl`, the caller's)."""

    kubeconfig: str | None = Field(default=None, min_length=1)
    context: str | None = Field(default=None, min_length=1)
    in_cluster: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("`in_cluster: true` takes no `kubeconfig` or `context`")
        if not self.in_cluster and not (self.kubeconfig or self.context):
            raise ValueError("give `kubeconfig` and/or `context`, or `in_cluster: true`")
        return self

    def describe(self) -> str:
        if self.in_cluster:
            return "in-cluster config"
        parts = [f"kubeconfig {self.kubeconfig}" if self.kubeconfig else "the default kubeconfig"]
        if self.context:
            parts.append(f"context {self.context}")
        return ", ".join(parts)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
TEMPLATE_NAMES = ("version", "namespace", "app", "deployment", "selector")  # a query's `{{ name }}`
_TEMPLATE = re.compile(r"{{\s*([A-Za-z_]+)\s*}}")


def seconds(value: Any) -> float:
    """A duration as the catalog writes it: `30s`, `2m`, `1h`, `500ms`, or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like `30s`, `2m`")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.fullmatch(str(value).strip())
    if m is None:
        raise ValueError(f"{value!r} is not a duration (write it like `30s`, `2m`, `1h` or `500ms`)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def template_names(text: str) -> list[str]:
    return _TEMPLATE.findall(text)


class PrometheusQuery(_Model):
    """A PromQL query, a template over `{{ version }}`, `{{ namespace }}`, `{{ app }}`,
    `{{ deployment }}` and `{{ selector }}` (the canary pods' label matchers)."""

    address: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    query: str = Field(min_length=1)

    @field_validator("query")
    @classmethod
    def _known_names(cls, v: str) -> str:
        unknown = sorted(set(template_names(v)) - set(TEMPLATE_NAMES))
        if unknown:
            known = ", ".join(f"{{{{ {n} }}}}" for n in TEMPLATE_NAMES)
            raise ValueError(f"unknown template name(s) {unknown} (known: {known})")
        return v


class Metric(_Model):
    """One metric of the analysis: its query's value must stay at or below `max` (or at or above
    `min`; both make a range)."""

    name: str = Field(pattern=_NAME)
    prometheus: PrometheusQuery
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.max is None and self.min is None:
            raise ValueError("give `max` or `min` (or both): the bound the query's value must keep")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError("`min` is above `max`")
        return self


class Webhook(_Model):
    """A gate: the bot POSTs the release's facts to `url` and goes on only when it answers
    `{"ok": true}` within `timeout` (docs/analysis.md has the JSON contract)."""

    name: str = Field(pattern=_NAME)
    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    timeout: float = 10.0
    phase: Literal["pre-rollout", "step", "promote"] = "step"

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> float:
        t = seconds(v)
        if not 0 < t <= 60:
            raise ValueError("timeout is more than 0 and at most 60 s")
        return t


class Analysis(_Model):
    """Canary analysis on top of the pod-health gate: every `interval` of a canary step, each metric is
    queried and each `step` webhook asked; `failure_limit` failed checks roll the release back, and
    after `auto_promote_after` good intervals in a row the bot promotes by itself."""

    interval: float = 30.0
    failure_limit: int = Field(default=1, ge=1, le=100)
    auto_promote_after: int | None = Field(default=None, ge=1, le=1000)
    metrics: tuple[Metric, ...] = ()
    webhooks: tuple[Webhook, ...] = ()

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> float:
        t = seconds(v)
        if not 0.1 <= t <= 3600:
            raise ValueError("interval is between 100 ms and 1 h")
        return t

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.metrics and not self.webhooks:
            raise ValueError("an analysis needs `metrics` or `webhooks`")
        names = [m.name for m in self.metrics] + [w.name for w in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError(f"a metric or webhook name is used twice: {names}")
        return self

    def gates(self, phase: str) -> tuple[Webhook, ...]:
        return tuple(w for w in self.webhooks if w.phase == phase)

    @property
    def checks_each_step(self) -> bool:
        return bool(self.metrics or self.gates("step"))


class Workload(_Model):
    """One more Deployment released with the app's own, to the same version (`deployments:`)."""

    name: str = Field(pattern=_DNS1123)
    container: str | None = Field(default=None, pattern=_NAME)  # default: the app's `container`
    containers: tuple[Annotated[str, Field(pattern=_NAME)], ...] = ()  # several, all set to the version
    image: str | None = Field(default=None, min_length=1)  # its own repository (default: the app's)

    def names(self, default: str) -> tuple[str, ...]:
        return self.containers or (self.container or default,)


class App(_Model):
    name: str = Field(pattern=_NAME)
    namespace: str = Field(pattern=_NAME)
    deployment: str = Field(pattern=_DNS1123)
    container: str = Field(pattern=_NAME)
    # Several containers of the Deployment set to the version (the first is `container` unless given).
    containers: tuple[Annotated[str, Field(pattern=_NAME)], ...] = ()
    # Several Deployments released as one app: the first is the app's own (`deployment`, which it sets
    # when not given), the others follow it to the same version, one after another or all at once
    # (`order`); if any fails, all are rolled back.
    deployments: tuple[Workload, ...] = ()
    order: Literal["serial", "parallel"] = "serial"
    image: str = Field(min_length=1, description="repository the version tag is appended to")
    service: str | None = Field(default=None, pattern=_NAME)
    strategies: tuple[Strategy, ...] = (Strategy.ROLLING,)
    default_strategy: Strategy = Strategy.ROLLING
    allow_image_override: bool = False
    rolling: Rolling = Rolling()
    canary: Canary = Canary()
    bluegreen: BlueGreen = BlueGreen()
    progress_deadline_seconds: int = Field(default=600, ge=1)
    auto_rollback: bool = True
    # A Deployment a GitOps tool manages (Argo CD, Flux, a server-side apply manager of its image) is
    # refused, since the tool would revert the release; `allow` releases it anyway, with a warning.
    gitops: Literal["refuse", "allow"] = "refuse"
    permissions: Permissions = Permissions()
    approvals: Approvals | None = None
    break_glass: BreakGlass | None = None
    freeze: tuple[Window, ...] = ()  # the catalog's global windows and the app's own
    freeze_override: People | None = None
    promotion: Promotion = Promotion()
    analysis: Analysis | None = None  # metrics and webhook gates of canary steps and blue-green switches
    # The cluster the app runs in, by its name in the catalog's `clusters:` (default: the process's own).
    cluster: str = Field(default=DEFAULT_CLUSTER, pattern=_NAME)

    @model_validator(mode="before")
    @classmethod
    def _first_deployment(cls, data: Any) -> Any:
        """`deployments: [{name, container}, ...]` names the app's own Deployment first."""
        if isinstance(data, dict) and isinstance(data.get("deployments"), list) and data["deployments"]:
            first = data["deployments"][0]
            if isinstance(first, dict):
                data = {**data}
                data.setdefault("deployment", first.get("name"))
                if first.get("containers"):
                    data.setdefault("containers", first["containers"])
                    data.setdefault("container", first["containers"][0])
                elif first.get("container"):
                    data.setdefault("container", first["container"])
        return data

    @property
    def own_containers(self) -> tuple[str, ...]:
        """The containers of the app's own Deployment set to the version; the first is `container`."""
        return (self.container, *(c for c in self.containers if c != self.container))

    @property
    def followers(self) -> tuple[Workload, ...]:
        """The Deployments released after (or with) the app's own, in order."""
        return tuple(w for w in self.deployments if w.name != self.deployment)

    def rule(self, action: Action) -> Rule:
        """Who may do `action` to this app (nobody when the catalog names no one)."""
        match action:
            case Action.APPROVE:
                return self.approvals.from_.as_rule() if self.approvals else Rule()
            case Action.BREAK_GLASS:
                return self.break_glass.as_rule() if self.break_glass else Rule()
            case Action.OVERRIDE:
                return self.freeze_override.as_rule() if self.freeze_override else Rule()
            case _:
                return self.permissions.rule(action)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_strategy not in self.strategies:
            raise ValueError(
                f"default_strategy {self.default_strategy.value!r} is not among strategies "
                f"{[s.value for s in self.strategies]}"
            )
        if Strategy.BLUEGREEN in self.strategies and not self.service:
            raise ValueError("blue-green needs `service` (the Service whose selector is switched)")
        if self.followers and Strategy.BLUEGREEN in self.strategies:
            raise ValueError(
                "blue-green releases one Deployment; an app with several `deployments` uses rolling "
                "and canary releases"
            )
        names = [w.name for w in self.deployments]
        if len(set(names)) != len(names):
            raise ValueError(f"`deployments` names a Deployment twice: {names}")
        if self.deployments and self.deployments[0].name != self.deployment:
            raise ValueError(
                f"the first of `deployments` ({self.deployments[0].name}) must be `deployment` "
                f"({self.deployment}), the app's own"
            )
        if self.containers and self.container not in self.containers:
            raise ValueError(
                f"`containers` {list(self.containers)} must include `container` ({self.container})"
            )
        for image in (self.image, *(w.image for w in self.followers if w.image)):
            if any(c in image for c in "@ ") or ":" in image.rsplit("/", 1)[-1]:
                raise ValueError(
                    f"image is a repository without tag or digest, e.g. registry.example.org/hexo (not {image!r})"
                )
        return self

    def image_for(self, version: str, *, full_reference: bool, repository: str | None = None) -> str:
        if full_reference:
            return version
        sep = "@" if version.startswith("sha256:") else ":"
        return f"{repository or self.image}{sep}{version}"


# Top-level keys besides `apps`: defaults for every app. `freeze` windows add to an app's own; the
# others apply where an app does not say its own.
GLOBAL_KEYS = ("freeze", "freeze_override", "break_glass")


class Catalog(_Model):
    apps: Mapping[str, App]
    # Clusters by name, besides `default` (the process's own settings unless named here too).
    clusters: Mapping[str, ClusterRef] = {}

    @classmethod
    def from_mapping(cls, data: Any) -> Catalog:
        if not isinstance(data, dict) or not isinstance(data.get("apps"), dict) or not data["apps"]:
            raise ConfigError("catalog: expected a mapping with `apps:` holding at least one app")
        extra = set(data) - {"apps", "clusters", *GLOBAL_KEYS}
        if extra:
            allowed = ", ".join(f"`{k}`" for k in ("apps", "clusters", *GLOBAL_KEYS))
            raise ConfigError(f"catalog: unknown top-level key(s) {sorted(extra)}; allowed: {allowed}")
        clusters = _clusters(data.get("clusters"))
        shared = {k: data[k] for k in GLOBAL_KEYS if data.get(k) is not None}
        if not isinstance(shared.get("freeze", []), list):
            raise ConfigError("catalog: `freeze` must be a list of windows")
        apps: dict[str, App] = {}
        for name, body in data["apps"].items():
            if not isinstance(body, dict):
                raise ConfigError(f"catalog: app {name!r}: expected a mapping")
            for full, merged in _environments(str(name), body):
                if full in apps:
                    raise ConfigError(f"catalog: app {full!r} is defined twice")
                fields = {**{k: v for k, v in shared.items() if k != "freeze"}, **merged}
                own = fields.get("freeze") or []
                if not isinstance(own, list):
                    raise ConfigError(f"catalog: app {full!r}: `freeze` must be a list of windows")
                fields["freeze"] = [*shared.get("freeze", []), *own]
                try:
                    apps[full] = App.model_validate({**fields, "name": full})
                except ValidationError as e:
                    raise ConfigError(f"catalog: app {full!r}: {_describe(e)}") from e
                cluster = apps[full].cluster
                if cluster != DEFAULT_CLUSTER and cluster not in clusters:
                    known = ", ".join(f"`{c}`" for c in sorted({DEFAULT_CLUSTER, *clusters}))
                    raise ConfigError(
                        f"catalog: app {full!r}: cluster {cluster!r} is not in `clusters:` (known: {known})"
                    )
        for full, app in apps.items():  # `promotion.from` names an environment of the same app
            source = app.promotion.from_
            if source is None:
                continue
            base = full[: -len(full.rsplit("-", 1)[-1]) - 1] if "-" in full else full
            candidates = [f"{base}-{source}", source]
            found = next((c for c in candidates if c in apps and c != full), None)
            if found is None:
                raise ConfigError(
                    f"catalog: app {full!r}: promotion.from {source!r} is not another environment of "
                    f"the app (expected `{candidates[0]}`)"
                )
            apps[full] = app.model_copy(
                update={"promotion": app.promotion.model_copy(update={"from_": found})}
            )
        return cls(apps=apps, clusters=clusters)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(
                f"catalog: cannot read {path}: {e.strerror} (name the catalog with --catalog FILE or "
                "RELEASE_BOT_CATALOG; docs: the README's 'The app catalog', or examples/catalog.yaml)"
            ) from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"catalog: cannot read {path}: not UTF-8 text") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"catalog: {path} is not valid YAML: {e}") from e
        return cls.from_mapping(data)

    def namespaces(self, cluster: str | None = None) -> set[str]:
        """The namespaces of the catalog's apps (in `cluster` only, when given)."""
        return {a.namespace for a in self.apps.values() if cluster is None or a.cluster == cluster}

    def cluster_names(self) -> list[str]:
        """The clusters the catalog's apps run in, `default` first."""
        used = {a.cluster for a in self.apps.values()}
        return sorted(used, key=lambda c: (c != DEFAULT_CLUSTER, c))

    def apps_in(self, cluster: str) -> list[App]:
        return [a for a in self.apps.values() if a.cluster == cluster]


def _clusters(data: Any) -> dict[str, ClusterRef]:
    if data is None:
        return {}
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            "catalog: `clusters` must map cluster names to `{kubeconfig, context}` or `{in_cluster: true}`"
        )
    found = {}
    for name, body in data.items():
        if not re.fullmatch(_NAME, str(name)):
            raise ConfigError(f"catalog: cluster {name!r} needs a lower-case name (letters, digits, -)")
        if not isinstance(body, dict):
            raise ConfigError(
                f"catalog: cluster {name!r}: expected a mapping like `{{kubeconfig: PATH, context: NAME}}`"
            )
        try:
            found[str(name)] = ClusterRef.model_validate(body)
        except ValidationError as e:
            raise ConfigError(f"catalog: cluster {name!r}: {_describe(e)}") from e
    return found


def _environments(name: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """An app with `environments:` becomes one app per environment, named `<app>-<env>`
    (`/release hexo v2.0 --env prod` is `/release hexo-prod v2.0`): the app's fields, with each
    environment's fields replacing them (e.g. its own namespace and stricter permissions)."""
    envs = body.get("environments")
    if envs is None:
        return [(name, body)]
    if not isinstance(envs, dict) or not envs:
        raise ConfigError(f"catalog: app {name!r}: `environments` must map environment names to fields")
    base = {k: v for k, v in body.items() if k != "environments"}
    out = []
    for env, fields in envs.items():
        if not isinstance(fields, dict) or not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", str(env)):
            raise ConfigError(
                f"catalog: app {name!r}: environment {env!r} needs a lower-case name and a mapping"
            )
        out.append((f"{name}-{env}", {**base, **fields}))
    return out


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)
