"""Blue-green's pure helpers: green names, label values, resource maths, the live colour, leftovers,
the green Deployment's body, the Endpoints check, and the card's wording."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.catalog import App
from bot.errors import UserError
from bot.releases import bluegreen as bg
from bot.releases import events, objects, refusals
from bot.releases.health import Live
from bot.releases.record import Phase, Record
from bot.slack import cards, mrkdwn, notes
from commands.intents import Strategy
from sandbox import hexo
from tests.unit.records import T0
from tests.unit.records import record as base_record

OURS = {"app.kubernetes.io/managed-by": "release-bot"}


def app(**changes: Any) -> App:
    body: dict[str, Any] = {
        "name": "hexo",
        "namespace": "devops",
        "deployment": "hexo",
        "container": "hexo",
        "image": "registry.sword.org/nginx",
        "service": "hexo-service",
        "strategies": ["rolling", "bluegreen"],
    }
    return App.model_validate({**body, **changes})


def guide_objects() -> tuple[dict[str, Any], dict[str, Any]]:
    """The guide's Deployment `hexo` and Service `hexo-service` (guide §1.1, §1.3)."""
    objs = {o["kind"]: o for o in hexo.objects("devops")}
    return objs["Deployment"], objs["Service"]


def deployment(name: str, version: str, *, replicas: int = 6, ours: bool = False, release: str = "") -> Any:
    dep = copy.deepcopy(guide_objects()[0])
    dep["metadata"]["name"] = name
    dep["spec"]["replicas"] = replicas
    dep["spec"]["template"]["metadata"]["labels"]["version"] = version
    if ours:
        dep["metadata"]["labels"].update(OURS)
        dep["metadata"]["annotations"] = {objects.APP_ANNOTATION: "hexo", objects.RELEASE_ID: release}
    return dep


def record(**changes: Any) -> Record:
    fields: dict[str, Any] = {
        "strategy": Strategy.BLUEGREEN,
        "channel_id": "C123",
        "channel_name": "releases",
        "green": "hexo-v2.0",
        "selector": {"app": "hexo-server", "version": "v1.0"},
        "replicas": 6,
        "cpu_millis": 600,
        "memory_bytes": 384_000_000,
    }
    return base_record(**{**fields, **changes})


# --- names and label values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hexo-v2.0", "hexo-v2.0"),
        ("Hexo_V2.0", "hexo-v2.0"),
        ("hexo-sha256:ab12", "hexo-sha256-ab12"),
        ("hexo..v2", "hexo.v2"),
        ("hexo-.v2-", "hexo.v2"),
        ("-hexo-", "hexo"),
        ("___", ""),
    ],
)
def test_dns_name(raw: str, expected: str) -> None:
    assert objects.dns_name(raw) == expected


@given(st.text(max_size=300))
def test_dns_name_is_always_valid_or_empty(raw: str) -> None:
    name = objects.dns_name(raw)
    assert len(name) <= 63
    assert name == "" or all(
        part
        and part[0].isalnum()
        and part[-1].isalnum()
        and set(part) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
        for part in name.split(".")
    )


def test_green_names_alternate_colours_that_claim_no_version() -> None:
    assert objects.green_name(app(), "v2.0", "hexo") == "hexo-green"
    assert objects.green_name(app(), "v3.0", "hexo-green") == "hexo-blue"
    assert objects.green_name(app(), "v4.0", "hexo-blue") == "hexo-green"
    assert objects.green_name(app(), "v2.1", "hexo-v2.0") == "hexo-green"  # a guide-style colour moves


def test_green_name_follows_the_catalog_template() -> None:
    guide = app(bluegreen={"name_template": "{deployment}-{version}"})
    assert objects.green_name(guide, "v2.0", "hexo") == "hexo-v2.0"  # guide §1.2
    assert (
        objects.green_name(app(bluegreen={"name_template": "{app}-green-{version}"}), "V3", "hexo")
        == "hexo-green-v3"
    )
    assert len(objects.green_name(guide, "x" * 200, "hexo")) == 63


@pytest.mark.parametrize("template", ["{nope}-{version}", "{", "___"])
def test_a_bad_template_is_a_clear_error(template: str) -> None:
    with pytest.raises(UserError, match="name_template"):
        objects.green_name(app(bluegreen={"name_template": template}), "v2.0", "hexo")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v2.0", "v2.0"),
        ("sha256:ab12", "sha256-ab12"),
        ("-x_", "x"),
        ("a" * 100, "a" * 63),
        ("::", "unknown"),
    ],
)
def test_label_value(version: str, expected: str) -> None:
    assert objects.label_value(version) == expected


def test_green_selector_changes_only_the_version() -> None:
    assert bg.green_selector(record()) == {"app": "hexo-server", "version": "v2.0"}


# --- resource maths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        ("2", Decimal(2)),
        ("64M", Decimal(64_000_000)),
        ("64Mi", Decimal(64 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1e3", Decimal(1000)),
        ("129e6", Decimal(129_000_000)),
        ("1k", Decimal(1000)),
        (".5", Decimal("0.5")),
    ],
)
def test_quantity(text: str, value: Decimal) -> None:
    assert objects.quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Xi", "1.2.3", "m"])
def test_quantity_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        objects.quantity(text)


def test_guide_pod_requests_and_the_doubled_footprint() -> None:
    dep = guide_objects()[0]
    assert objects.pod_requests(dep["spec"]["template"]) == (100, 64_000_000)
    size = objects.footprint(dep)
    assert size == objects.Footprint(replicas=6, cpu_millis=600, memory_bytes=384_000_000)
    assert size.during == objects.Footprint(replicas=12, cpu_millis=1200, memory_bytes=768_000_000)


def test_pod_requests_sum_containers_and_respect_init_containers() -> None:
    def c(cpu: str | None = None, memory: str | None = None) -> dict[str, Any]:
        requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
        return {"name": "c", "resources": {"requests": requests}} if requests else {"name": "c"}

    assert objects.pod_requests({"spec": {"containers": [c("100m", "64Mi"), c("250m"), c()]}}) == (
        350,
        64 * 2**20,
    )
    init = {"spec": {"containers": [c("100m", "1M")], "initContainers": [c("1", "1k"), c("500m")]}}
    assert objects.pod_requests(init) == (1000, 1_000_000)  # the larger of the sum and any init container
    assert objects.pod_requests({"spec": {"containers": [c("not-a-quantity")]}}) == (0, 0)


# --- the live colour and the Service selector ------------------------------------------------------


def service(selector: dict[str, str] | None) -> dict[str, Any]:
    svc = copy.deepcopy(guide_objects()[1])
    svc["spec"]["selector"] = selector
    return svc


V1 = {"app": "hexo-server", "version": "v1.0"}
V2 = {"app": "hexo-server", "version": "v2.0"}


def test_the_live_colour_is_what_the_service_selects() -> None:
    hexo_, green = deployment("hexo", "v1.0", replicas=0), deployment("hexo-v2.0", "v2.0", ours=True)
    assert objects.find_live(app(), service(V1), [hexo_, green]) is hexo_
    assert objects.find_live(app(), service(V2), [hexo_, green]) is green  # after a first release


def test_a_guide_style_colour_made_by_hand_is_the_apps_live_colour() -> None:
    hexo_, by_hand = deployment("hexo", "v1.0", replicas=0), deployment("hexo-v2.0", "v2.0")
    assert objects.find_live(app(), service(V2), [hexo_, by_hand]) is by_hand


def test_a_retired_colour_with_the_same_labels_is_skipped() -> None:
    retired, live = deployment("hexo", "v1.0", replicas=0), deployment("hexo-v1.0", "v1.0", ours=True)
    assert objects.find_live(app(), service(V1), [retired, live]) is live


@pytest.mark.parametrize(
    ("selector", "deployments", "words"),
    [
        (None, ["hexo"], "has no selector"),
        ({"app": "hexo-server"}, ["hexo"], "without a `version` label"),
        (
            {"app": "hexo-server", "version": "v9"},
            ["hexo"],
            "`hexo`'s pods are labelled `app=hexo-server,version=v1.0`",
        ),
        (V1, ["hexo", "hexo-copy"], "several running Deployments (`hexo`, `hexo-copy`)"),
        (V1, ["other"], "neither the catalog's `hexo` nor one release-bot created"),
    ],
)
def test_selector_problems_are_clear_errors(
    selector: dict[str, str] | None, deployments: list[str], words: str
) -> None:
    deps = [deployment(name, "v1.0") for name in deployments]
    with pytest.raises(UserError) as e:
        objects.find_live(app(), service(selector), deps)
    assert words in str(e.value)


# --- the green Deployment --------------------------------------------------------------------------


def test_green_action() -> None:
    rid = "hexo-20240501-120000-abcd"
    assert bg.green_action(None, rid, "hexo", "hexo") == "create"
    assert (
        bg.green_action(deployment("hexo-v2.0", "v2.0", ours=True, release=rid), rid, "hexo", "hexo")
        == "reuse"
    )
    old = deployment("hexo-v2.0", "v2.0", ours=True, release="hexo-20000101-000000-dead")
    assert bg.green_action(old, rid, "hexo", "hexo") == "replace"
    assert bg.green_action(old, None, "hexo", "hexo") == "replace"  # the pre-check at /release
    with pytest.raises(UserError, match="not created by release-bot"):
        bg.green_action(deployment("hexo-v2.0", "v2.0"), rid, "hexo", "hexo")
    with pytest.raises(UserError, match="live colour's own name"):
        bg.green_action(old, rid, "hexo-v2.0", "hexo")
    other_app = deployment("hexo-v2.0", "v2.0", ours=True, release=rid)
    other_app["metadata"]["annotations"][objects.APP_ANNOTATION] = "blog"
    with pytest.raises(UserError, match="not created by release-bot"):
        bg.green_action(other_app, rid, "hexo", "hexo")


def test_green_body_is_blue_with_the_new_version_and_our_mark() -> None:
    blue = guide_objects()[0]
    blue["spec"]["paused"] = True
    blue["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "3", "team": "web"}
    before = copy.deepcopy(blue)
    body = bg.green_body(blue, record(), app(progress_deadline_seconds=120))
    assert blue == before  # blue itself is not changed
    meta, spec = body["metadata"], body["spec"]
    assert meta["name"] == "hexo-v2.0"
    running = {objects.APP_VERSION_LABEL: "v2.0"}  # names the version green runs, like its name
    assert meta["labels"] == {"app": "hexo-server", "version": "v2.0", **running, **OURS}
    assert meta["annotations"][objects.RELEASE_ID] == "hexo-20240501-120000-abcd"
    assert meta["annotations"][objects.APP_ANNOTATION] == "hexo"
    assert meta["annotations"]["team"] == "web"
    assert "deployment.kubernetes.io/revision" not in meta["annotations"]
    assert "(bluegreen)" in meta["annotations"]["kubernetes.io/change-cause"]
    assert spec["selector"]["matchLabels"] == V2
    assert spec["template"]["metadata"]["labels"] == {**V2, **running}
    assert spec["template"]["spec"]["containers"][0]["image"] == "registry.sword.org/nginx:v2.0"
    assert spec["replicas"] == 6 and spec["progressDeadlineSeconds"] == 120 and "paused" not in spec
    assert objects.is_ours(body, "hexo") and not objects.is_ours(blue, "hexo")


# --- the Endpoints check ---------------------------------------------------------------------------


def pod(ip: str, *, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": ip}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    status = "True" if ready else "False"
    return {"metadata": meta, "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": status}]}}


def endpoints(ready: list[str], not_ready: tuple[str, ...] = ()) -> dict[str, Any]:
    subset: dict[str, Any] = {"addresses": [{"ip": ip} for ip in ready]}
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"subsets": [subset]}


def test_serves_only() -> None:
    green = [pod("10.0.0.1"), pod("10.0.0.2"), pod("10.0.0.3", ready=False)]
    assert objects.serves_only(endpoints(["10.0.0.1", "10.0.0.2"], ("10.0.0.3",)), green)
    assert objects.serves_only(endpoints(["10.0.0.1", "10.0.0.2"]), green)
    assert not objects.serves_only(endpoints(["10.0.0.1", "10.0.0.2", "10.9.9.9"]), green)  # a blue pod left
    assert not objects.serves_only(endpoints(["10.0.0.1"], ("10.9.9.9",)), green)
    assert not objects.serves_only(endpoints(["10.0.0.1"]), green)  # a ready green pod is missing
    assert not objects.serves_only({"subsets": None}, green)
    assert not objects.serves_only(endpoints(["10.0.0.1"]), [pod("10.0.0.1", deleting=True)])


# --- wording ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (768_000_000, "768 MB"),
        (384 * 2**20, "384 MiB"),
        (3 * 2**30, "3 GiB"),
        (1_500_000_000, "1.5 GB"),
        (512, "512 B"),
    ],
)
def test_memory_text(n: int, text: str) -> None:
    assert mrkdwn.memory_text(n) == text


def test_cpu_text() -> None:
    assert (mrkdwn.cpu_text(600), mrkdwn.cpu_text(1200), mrkdwn.cpu_text(2000)) == (
        "600m CPU",
        "1.2 CPU",
        "2 CPU",
    )


def test_the_card_shows_both_colours_and_twice_the_resources() -> None:
    text = str(cards.card(record(phase=Phase.AWAITING_SWITCH), Live(now=T0))[1])
    assert "12 pods (6 blue + 6 green) requesting 1.2 CPU and 768 MB" in text
    assert "twice the usual 6 pods with 600m CPU and 384 MB" in text
    assert "traffic on *blue*" in text and "Switch traffic" in text
    switched = str(cards.card(record(phase=Phase.SWITCHED), Live(now=T0))[1])
    assert "traffic on *green*" in switched and "Finish" in switched and "Rollback" in switched
    done = str(cards.card(record(phase=Phase.SUCCEEDED, finished_at=T0), Live(now=T0))[1])
    assert "12 pods" not in done


def test_no_requests_declared() -> None:
    assert "requesting no declared requests" in cards.bluegreen_footprint(
        record(cpu_millis=0, memory_bytes=0)
    )


def test_hostile_names_are_escaped_in_milestones() -> None:
    r = record(green="<!channel>", deployment="<@U999>")
    for text in (
        notes.note(r, events.GreenCreated()),
        notes.note(r, events.GreenReady()),
        notes.note(
            r, events.Switched(service="svc", pods=6, seconds=0.4, grace_seconds=300, retire="scale-down")
        ),
        notes.note(r, events.GreenFailed(reason="<!here>", switched=False)),
        notes.note(r.to(Phase.ABORTED), events.BlueGreenEnded(aborted=True, green_deleted=True)),
        notes.note(r, events.Retired(how="kept", seconds=10)),
    ):
        assert "<!" not in text and "<@U999>" not in text


def test_too_big_says_what_to_do() -> None:
    text = str(refusals.TooBig("hexo", 6, 10))
    assert "12 pods (6 blue + 6 green)" in text and "max_replicas` of 10" in text and "--rolling" in text
