"""The release form and the App Home tab with the real bot process, the simulator and the real
control plane: `/release` alone opens a modal with the apps the person may release and what runs
now; a bad submission is answered under its field and changes nothing; a good one starts exactly the
release the typed command would, whichever replica takes it; the Home tab shows what runs and the
last release with a link to its card."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from sandbox.slack.views import View
from tests.fixtures.bot import (
    BotProcess,
    Bots,
    card_of,
    card_text,
    kubectl_json,
    pods_by_image,
    wait_card,
    wait_ephemeral,
)

pytestmark = pytest.mark.integration


async def metrics_text(bot: BotProcess) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{bot.port}/metrics") as resp:
        return await resp.text()


def generation(cluster: ClusterInfo, namespace: str) -> int:
    dep = kubectl_json(cluster, "-n", namespace, "get", "deployment", "hexo")
    return int(dep["metadata"]["generation"])


def texts(node: Any) -> str:
    """Every text in a view's blocks (labels, hints, options, mrkdwn), as one string."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("text"), str):
                found.append(value["text"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(node)
    return "\n".join(found)


async def open_form(sim: SlackSimulator, user: str, words: str = "runs `v1.0` now") -> View:
    """Type `/release` alone as `user`; the modal once the bot has drawn what runs now."""
    player = sim.player()
    try:
        answer = await player.command(user, "")
    finally:
        await player.close()
    assert answer.status == 200 and answer.text == ""
    uid = sim.users[user]

    def drawn() -> View | None:
        modal = sim.workspace.views.modal_of(uid)
        return modal if modal is not None and words in texts(modal.data["blocks"]) else None

    return await sim.wait_for(drawn, timeout=20)


def select_values(view: View, action_id: str) -> list[str]:
    _, element = view_element(view, action_id)
    return [o["value"] for o in element.get("options", [])]


def view_element(view: View, action_id: str) -> tuple[str, dict[str, Any]]:
    for block in view.data["blocks"]:
        element = block.get("element") or {}
        if element.get("action_id") == action_id:
            return block["block_id"], element
    raise AssertionError(f"no {action_id} in the form")


async def test_form_opens_refuses_bad_input_on_the_field_then_releases(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    ns = bots.namespace
    before = generation(control_plane, ns)
    view = await open_form(slack_sim, "alice")
    assert view.data["callback_id"] == "release:form"
    assert select_values(view, "form:app") == ["hexo"]
    assert select_values(view, "form:strategy") == ["rolling", "canary", "bluegreen"]
    _, version = view_element(view, "form:version")
    assert version["type"] == "plain_text_input"
    hint = next(b["hint"]["text"] for b in view.data["blocks"] if b.get("block_id") == "form:version")
    assert hint.startswith("Runs v1.0 now.")
    assert len(slack_sim.calls_to("views.open")) == 1 and slack_sim.calls_to("views.update")[-1].ok

    player = slack_sim.player()
    try:
        bad = await player.submit_view("alice", {"form:version": "v2.0 <!channel>"})
        assert bad.status == 200 and bad.json["response_action"] == "errors"
        modal = slack_sim.workspace.views.modal_of(slack_sim.users["alice"])
        assert modal is not None and modal.open
        assert "is not a valid version" in modal.errors["form:version"]
        empty = await player.submit_view("alice", {"form:version": ""})
        assert "Type the version" in empty.json["errors"]["form:version"]
        assert generation(control_plane, ns) == before
        assert card_of(slack_sim, slack_sim.channels["releases"]) is None

        good = await player.submit_view("alice", {"form:version": "v2.0", "form:strategy": "canary"})
        assert good.status == 200 and not good.text  # an empty ack: the form closes
    finally:
        await player.close()
    assert slack_sim.workspace.views.modal_of(slack_sim.users["alice"]) is None
    card = await wait_card(slack_sim, "Promote")
    text = card_text(card)
    assert "Release hexo v1.0 → v2.0" in text and "canary" in text
    await wait_ephemeral(slack_sim, "alice", "follow the card")
    assert pods_by_image(control_plane, ns) == {"v2.0": 1, "v1.0": 6}


async def test_form_for_someone_who_may_release_nothing(bots: Bots, slack_sim: SlackSimulator) -> None:
    await bots.start()
    player = slack_sim.player()
    try:
        assert (await player.command("mallory", "")).status == 200
    finally:
        await player.close()
    text = await wait_ephemeral(slack_sim, "mallory", "may not release any app")
    assert "/release apps" in text
    assert slack_sim.calls_to("views.open") == []


async def test_form_submission_is_checked_again_and_refused_on_the_field(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    """The rights are checked again at submission: alice loses them between opening and submitting
    (a catalog with only bob, in another replica), and the form says so."""
    await bots.start()
    ns = bots.namespace
    bob = slack_sim.users["bob"]
    other = await bots.start(instance="bot-other", extra={"permissions": {"release": {"users": [bob]}}})
    before = generation(control_plane, ns)
    await open_form(slack_sim, "alice")
    player = slack_sim.player(other.url)
    try:
        answer = await player.submit_view("alice", {"form:version": "v2.0"})
    finally:
        await player.close()
    assert answer.json["response_action"] == "errors"
    assert "not allowed to release hexo" in answer.json["errors"]["form:app"]
    assert generation(control_plane, ns) == before


async def test_any_replica_takes_the_submission(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    first = await bots.start(instance="bot-a")
    second = await bots.start(instance="bot-b")
    assert slack_sim.bot_url == first.url
    await open_form(slack_sim, "alice")
    player = slack_sim.player(second.url)  # the submission reaches the replica that did not open it
    try:
        answer = await player.submit_view("alice", {"form:version": "v2.0"})
    finally:
        await player.close()
    assert answer.status == 200 and not answer.text
    await wait_card(slack_sim, "Succeeded", timeout=90)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
    interactive = 'release_bot_ack_seconds_count{kind="interactive",mode="http"}'
    assert f"{interactive} 1.0" in await metrics_text(second)
    assert interactive not in await metrics_text(first)  # the replica that opened the form saw nothing


async def test_form_with_environments_redraws_for_the_chosen_one(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    alice = slack_sim.users["alice"]
    rules = {"release": {"users": [alice]}}
    envs = {
        "staging": {"permissions": rules, "strategies": ["rolling"]},
        "prod": {"permissions": rules, "strategies": ["rolling", "canary"], "default_strategy": "canary"},
    }
    await bots.start(extra={"environments": envs})
    strategies = {"hexo-staging": ["rolling"], "hexo-prod": ["rolling", "canary"]}
    view = await open_form(slack_sim, "alice")
    assert select_values(view, "form:app") == ["hexo"]
    assert sorted(select_values(view, "form:env")) == ["hexo-prod", "hexo-staging"]
    env_block, _ = view_element(view, "form:env")
    first = view.data["state"]["values"][env_block]["form:env"]["selected_option"]["value"]
    assert select_values(view, "form:strategy") == strategies[first]
    assert f"`{first}`" in texts(view.data["blocks"])
    other = "hexo-prod" if first == "hexo-staging" else "hexo-staging"

    def showing(name: str) -> Any:
        def drawn() -> View | None:
            modal = slack_sim.workspace.views.modal_of(alice)
            if modal is None or "runs `v1.0` now" not in texts(modal.data["blocks"]):
                return None
            ids = [b.get("block_id") for b in modal.data["blocks"]]
            return modal if f"form:strategy:{name}" in ids else None

        return drawn

    player = slack_sim.player()
    try:
        assert (await player.view_action("alice", "form:env", other)).status == 200
        view = await slack_sim.wait_for(showing(other), timeout=20)
        assert select_values(view, "form:strategy") == strategies[other]
        assert f"`{other}`" in texts(view.data["blocks"])
        if other != "hexo-prod":  # the release goes to hexo-prod, with its default strategy (canary)
            assert (await player.view_action("alice", "form:env", "hexo-prod")).status == 200
            await slack_sim.wait_for(showing("hexo-prod"), timeout=20)
        answer = await player.submit_view("alice", {"form:version": "v2.0"})
        assert answer.status == 200 and not answer.text
    finally:
        await player.close()
    card = await wait_card(slack_sim, "Promote")
    assert "hexo-prod" in card_text(card)


async def test_home_tab_shows_what_runs_and_the_last_release(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    player = slack_sim.player()
    try:
        await player.command("alice", "hexo v2.0")
        await wait_card(slack_sim, "Succeeded", timeout=90)
        alice, mallory = slack_sim.users["alice"], slack_sim.users["mallory"]
        deliveries = await player.open_home("alice")
        assert deliveries[-1].response.status == 200
        home = await slack_sim.wait_for(lambda: slack_sim.workspace.views.home_of(alice), timeout=20)
        shown = texts(home.data["blocks"])
        assert "*hexo*" in shown and "Runs `v2.0`" in shown and "6/6 ready" in shown
        assert "Last release: `v1.0` → `v2.0` (rolling)" in shown
        assert f"<https://release-sandbox.slack.com/archives/{slack_sim.channels['releases']}/p" in shown
        assert "revision(s), newest first" in shown
        assert "current or last release" in shown  # the record keeps one release per app, and says so

        await player.open_home("mallory")
        other = await slack_sim.wait_for(lambda: slack_sim.workspace.views.home_of(mallory), timeout=20)
        assert "No app of the catalog lets you see it" in texts(other.data["blocks"])
        assert "hexo" not in texts(other.data["blocks"])
    finally:
        await player.close()


async def test_the_form_over_socket_mode(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start(socket_mode=True)
    alice = slack_sim.users["alice"]
    player = slack_sim.player(transport="socket")
    try:
        assert (await player.command("alice", "")).status == 200

        def drawn() -> View | None:
            modal = slack_sim.workspace.views.modal_of(alice)
            return modal if modal is not None and "runs `v1.0` now" in texts(modal.data["blocks"]) else None

        await slack_sim.wait_for(drawn, timeout=20)
        bad = await player.submit_view("alice", {"form:version": "-v2"})
        assert bad.json["response_action"] == "errors" and "form:version" in bad.json["errors"]
        good = await player.submit_view("alice", {"form:version": "v2.0"})
        assert good.status == 200 and good.json is None
    finally:
        await player.close()
    assert [d.type for d in slack_sim.socket_mode.deliveries] == [
        "slash_commands",
        "interactive",
        "interactive",
    ]
    await wait_card(slack_sim, "Succeeded", timeout=90)
