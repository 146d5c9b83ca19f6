"""History, rollback to a revision, status, pause/resume and the audit trail (guide §2.3, §3.1.3).

`/release rollback` must leave the cluster exactly as `kubectl rollout undo` does: the bot and kubectl
act on twin Deployments with the same history, and their templates and revisions are compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from sandbox import hexo as hexo_app
from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    Bots,
    card_text,
    click,
    command,
    create_hexo,
    kubectl,
    kubectl_json,
    pods_by_image,
    wait_card,
    wait_ephemeral,
)
from tests.fixtures.cluster import rollout_complete, sa_has_token, wait_for_deployment, wait_for_object

pytestmark = pytest.mark.integration
REPO = hexo_app.IMAGE_REPO


async def release(sim: SlackSimulator, text: str) -> None:
    before = len(sim.history(sim.channels["releases"]))
    await command(sim, "alice", text)

    def done() -> bool:
        msgs = sim.history(sim.channels["releases"])
        return len(msgs) > before and (
            "Succeeded" in card_text(msgs[0]) or "Rolled back" in card_text(msgs[0])
        )

    await sim.wait_for(done, timeout=60)


async def confirm_rollback(sim: SlackSimulator, user: str, text: str) -> None:
    """Type the rollback command, click the confirm button on the private answer, wait for the card."""
    channel, uid = sim.channels["releases"], sim.users[user]
    before, offers = len(sim.history(channel)), len(sim.ephemerals(channel, uid))
    await command(sim, user, text)
    offer = await sim.wait_for(
        lambda: next(
            (
                m
                for m in reversed(sim.ephemerals(channel, uid)[offers:])
                if "Roll back to revision" in json.dumps(m.get("blocks"))
            ),
            None,
        )
    )
    assert await click(sim, user, offer, "undo:rollback") == 200

    def done() -> bool:
        msgs = sim.history(channel)
        return len(msgs) > before and "Succeeded" in card_text(msgs[0])

    await sim.wait_for(done, timeout=60)


def kubectl_ns(cluster: ClusterInfo, ns: str, *args: str) -> str:
    return kubectl(cluster, "-n", ns, *args)


async def twin(kube_admin: client.ApiClient, name: str) -> str:
    core = client.CoreV1Api(kube_admin)
    body: Any = {"metadata": {"name": name, "labels": {"release-bot.test": "true"}}}
    await core.create_namespace(body)
    await wait_for_object(core.list_namespaced_service_account, "default", sa_has_token, namespace=name)
    await create_hexo(kube_admin, name)
    return name


async def kubectl_release(cluster: ClusterInfo, kube_admin: client.ApiClient, ns: str, version: str) -> None:
    kubectl_ns(cluster, ns, "set", "image", "deployment/hexo", f"hexo={REPO}:{version}")
    await wait_for_deployment(
        kube_admin,
        ns,
        "hexo",
        lambda d: rollout_complete(d) and d.spec.template.spec.containers[0].image.endswith(version),
    )


def template_and_revision(cluster: ClusterInfo, ns: str) -> tuple[Any, str]:
    """The pod template and revision, without the `app.kubernetes.io/version` label the bot's own
    releases add to the template (kubectl set image adds none; undo brings back whatever the
    revision had, which the twin checks below)."""
    dep = kubectl_json(cluster, "-n", ns, "get", "deployment", "hexo")
    template = dep["spec"]["template"]
    template["metadata"].get("labels", {}).pop("app.kubernetes.io/version", None)
    return template, dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]


async def test_rollback_matches_kubectl_rollout_undo_on_a_twin(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, kube_admin: client.ApiClient
) -> None:
    await bots.start()
    twin_ns = await twin(kube_admin, f"{bots.namespace[:50]}-twin")
    try:
        for version in ("v2.0", "v3.0"):
            await release(slack_sim, f"hexo {version}")
            await kubectl_release(control_plane, kube_admin, twin_ns, version)

        await confirm_rollback(slack_sim, "bob", "rollback hexo --to-revision 1")
        kubectl_ns(control_plane, twin_ns, "rollout", "undo", "deployment/hexo", "--to-revision=1")
        await wait_for_deployment(kube_admin, twin_ns, "hexo", rollout_complete)
        ours, theirs = (
            template_and_revision(control_plane, bots.namespace),
            template_and_revision(control_plane, twin_ns),
        )
        assert ours == theirs
        assert ours[1] == "4"
        assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}

        await confirm_rollback(slack_sim, "bob", "rollback hexo")
        kubectl_ns(control_plane, twin_ns, "rollout", "undo", "deployment/hexo")
        await wait_for_deployment(kube_admin, twin_ns, "hexo", rollout_complete)
        ours, theirs = (
            template_and_revision(control_plane, bots.namespace),
            template_and_revision(control_plane, twin_ns),
        )
        assert ours == theirs
        assert ours[0]["spec"]["containers"][0]["image"].endswith(":v3.0")
        dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
        assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "v3.0"
        assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "v3.0"

        history = kubectl_ns(control_plane, bots.namespace, "rollout", "history", "deployment/hexo")
        assert "bob" in history and "rolled back to revision" in history
    finally:
        await client.CoreV1Api(kube_admin).delete_namespace(twin_ns)


async def test_history_status_pause_resume_and_audit_trail(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    await bots.start(audit_log=audit)
    channel = slack_sim.channels["releases"]
    await release(slack_sim, "hexo v2.0")
    await command(slack_sim, "alice", "hexo v3.0 --canary")
    card = await wait_card(slack_sim, "Promote")
    assert await click(slack_sim, "bob", card, "release:rollback") == 200
    await wait_card(slack_sim, "Rolled back")

    await command(slack_sim, "bob", "history hexo")
    text = await wait_ephemeral(slack_sim, "bob", "Revisions of hexo")
    lines = [line for line in text.splitlines() if line.startswith("`")]
    assert [line.split("`")[1] for line in lines] == ["4", "3", "1"]  # v2.0 came back as revision 4
    assert "release-bot: alice" in text
    assert "running" in lines[0]

    await command(slack_sim, "bob", "history hexo --revision 1")
    detail = await wait_ephemeral(slack_sim, "bob", "revision 1")
    assert "Differs from the running template" in detail
    assert "v1.0" in detail and "v2.0" in detail

    await command(slack_sim, "bob", "status hexo")
    status = await wait_ephemeral(slack_sim, "bob", "Replicas:")
    assert "nginx:v2.0" in status and "desired 6" in status and "rolled back" in status

    await command(slack_sim, "mallory", "pause hexo")
    await wait_ephemeral(slack_sim, "mallory", "not allowed")
    await command(slack_sim, "alice", "pause hexo")
    await slack_sim.wait_for(
        lambda: any("paused the rollout" in m.get("text", "") for m in slack_sim.history(channel))
    )
    assert (
        kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")["spec"]["paused"]
        is True
    )
    await command(slack_sim, "alice", "resume hexo")
    await slack_sim.wait_for(
        lambda: any("resumed the rollout" in m.get("text", "") for m in slack_sim.history(channel))
    )
    assert not kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")["spec"].get(
        "paused"
    )

    # Audit: JSON lines and Kubernetes Events that outlive the channel.
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    actions = {(e["action"], e["actor_name"]) for e in entries}
    assert {("release", "alice"), ("rollback", "bob"), ("pause", "alice"), ("resume", "alice")} <= actions, (
        entries
    )
    assert any(e["action"].startswith("refused") and e["actor_name"] == "mallory" for e in entries)
    assert all(e["namespace"] == bots.namespace and e["app"] == "hexo" for e in entries)
    assert any(e["card"].startswith("https://") for e in entries)
    events = kubectl(
        control_plane, "-n", bots.namespace, "get", "events", "--field-selector", "involvedObject.name=hexo"
    )
    assert "by bob" in events and channel in events


async def test_rollback_of_a_paused_deployment_resumes_it_and_is_refused_during_a_release(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    await release(slack_sim, "hexo v2.0")
    await command(slack_sim, "alice", "pause hexo")
    await slack_sim.wait_for(
        lambda: kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")["spec"].get(
            "paused"
        )
    )
    await confirm_rollback(slack_sim, "alice", "rollback hexo")
    dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert not dep["spec"].get("paused")
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}

    await command(slack_sim, "alice", "hexo v3.0 --canary")
    await wait_card(slack_sim, "Promote")
    await command(slack_sim, "bob", "rollback hexo --to-revision 1")
    refused = await wait_ephemeral(slack_sim, "bob", "is running")
    assert "Rollback on its card" in refused
