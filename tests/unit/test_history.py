"""`kubectl rollout undo [--to-revision=N]`, computed as a JSON patch like kubectl's rollback.go."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.errors import UserError
from bot.releases.history import SKIPPED_ANNOTATIONS, NothingToUndo, by_revision, template_of, undo

Obj = dict[str, Any]
REPO = "registry.sword.org/nginx"
REV = "deployment.kubernetes.io/revision"
CAUSE = "kubernetes.io/change-cause"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def template(version: str, hash_: str | None = None) -> Obj:
    labels = {"app": "hexo-server", "version": version}
    if hash_:
        labels["pod-template-hash"] = hash_
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "hexo", "image": f"{REPO}:{version}"}]},
    }


def rs(rev: int, version: str, annotations: dict[str, str] | None = None) -> Obj:
    return {
        "metadata": {
            "name": f"hexo-h{rev}",
            "labels": {"app": "hexo-server", "pod-template-hash": f"h{rev}"},
            "annotations": {REV: str(rev), **(annotations or {})},
        },
        "spec": {"template": template(version, f"h{rev}")},
    }


def deployment(
    version: str, rev: int, *, paused: bool = False, annotations: dict[str, str] | None = None
) -> Obj:
    spec: Obj = {"replicas": 6, "template": template(version)}
    if paused:
        spec["paused"] = True
    return {"metadata": {"name": "hexo", "annotations": {REV: str(rev), **(annotations or {})}}, "spec": spec}


HISTORY = [rs(1, "v1.0"), rs(3, "v3.0"), rs(2, "v2.0")]  # out of order on purpose


def op(patch: list[Obj], path: str) -> Any:
    found = [o for o in patch if o["path"] == path]
    assert len(found) == 1, patch
    assert found[0]["op"] == "replace"
    return found[0]["value"]


def test_by_revision_is_newest_first() -> None:
    assert [r["metadata"]["name"] for r in by_revision(HISTORY)] == ["hexo-h3", "hexo-h2", "hexo-h1"]


def test_previous_revision_is_the_second_highest() -> None:
    plan = undo(deployment("v3.0", 3), HISTORY, None, unpause=False)
    assert plan.revision == 2
    assert not plan.noop
    assert op(plan.patch, "/spec/template") == template("v2.0")
    assert [o["path"] for o in plan.patch] == ["/spec/template", "/metadata/annotations"]


def test_to_revision_found() -> None:
    plan = undo(deployment("v3.0", 3), HISTORY, 1, unpause=False)
    assert plan.revision == 1
    assert op(plan.patch, "/spec/template")["spec"]["containers"][0]["image"] == f"{REPO}:v1.0"


def test_to_revision_not_found_lists_known_revisions() -> None:
    with pytest.raises(NothingToUndo) as info:
        undo(deployment("v3.0", 3), HISTORY, 9, unpause=False)
    assert str(info.value) == "Revision 9 not found; known revisions: 3, 2, 1."


def test_no_history() -> None:
    with pytest.raises(NothingToUndo, match="no revisions to go back to"):
        undo(deployment("v1.0", 1), [], None, unpause=False)
    with pytest.raises(NothingToUndo, match="There is no previous revision to roll back to"):
        undo(deployment("v1.0", 1), [rs(1, "v1.0")], None, unpause=False)


def test_to_the_only_revision_is_a_noop() -> None:
    plan = undo(deployment("v1.0", 1), [rs(1, "v1.0")], 1, unpause=False)
    assert plan.noop
    assert plan.revision == 1


def test_nothing_to_undo_is_shown_to_the_user() -> None:
    assert issubclass(NothingToUndo, UserError)


def test_pod_template_hash_label_is_removed() -> None:
    plan = undo(deployment("v3.0", 3), HISTORY, None, unpause=False)
    labels = op(plan.patch, "/spec/template")["metadata"]["labels"]
    assert labels == {"app": "hexo-server", "version": "v2.0"}
    assert "pod-template-hash" not in template_of(rs(5, "v5"))["metadata"]["labels"]


def test_annotations_like_kubectl() -> None:
    dep = deployment(
        "v3.0",
        3,
        annotations={
            LAST_APPLIED: "{...}",
            "deployment.kubernetes.io/desired-replicas": "6",
            CAUSE: "release v3.0",
            "team": "web",  # not bookkeeping: replaced by the revision's own annotations
        },
    )
    history = [
        rs(3, "v3.0", {CAUSE: "release v3.0"}),
        rs(
            2,
            "v2.0",
            {CAUSE: "release v2.0", "note": "from rs", "deployment.kubernetes.io/max-replicas": "7"},
        ),
    ]
    plan = undo(dep, history, None, unpause=False)
    assert op(plan.patch, "/metadata/annotations") == {
        # bookkeeping ones kept from the Deployment
        REV: "3",
        LAST_APPLIED: "{...}",
        "deployment.kubernetes.io/desired-replicas": "6",
        # the ReplicaSet's own ones, change-cause included
        CAUSE: "release v2.0",
        "note": "from rs",
    }


def test_skipped_annotations_are_kubectls() -> None:
    assert {
        LAST_APPLIED,
        REV,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    } == SKIPPED_ANNOTATIONS


def test_missing_annotations_everywhere() -> None:
    dep = deployment("v2.0", 2)
    dep["metadata"].pop("annotations")
    history = [rs(2, "v2.0"), rs(1, "v1.0")]
    history[1]["metadata"]["annotations"] = {REV: "1"}
    plan = undo(dep, history, None, unpause=False)
    assert op(plan.patch, "/metadata/annotations") == {}


def test_paused_deployment_is_refused_without_unpause() -> None:
    with pytest.raises(NothingToUndo, match=r"^The Deployment is paused; resume it first\.$"):
        undo(deployment("v3.0", 3, paused=True), HISTORY, None, unpause=False)


def test_paused_deployment_is_unpaused_in_the_same_patch() -> None:
    plan = undo(deployment("v3.0", 3, paused=True), HISTORY, 1, unpause=True)
    assert plan.revision == 1
    assert op(plan.patch, "/spec/paused") is False
    assert [o["path"] for o in plan.patch] == ["/spec/template", "/metadata/annotations", "/spec/paused"]


def test_unpause_on_a_running_deployment_adds_nothing() -> None:
    plan = undo(deployment("v3.0", 3), HISTORY, None, unpause=True)
    assert "/spec/paused" not in [o["path"] for o in plan.patch]


def test_noop_ignores_the_hash_label() -> None:
    dep = deployment("v2.0", 3)
    dep["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "h3"
    plan = undo(dep, HISTORY, 2, unpause=False)
    assert plan.noop
    assert not undo(dep, HISTORY, 1, unpause=False).noop


def test_inputs_are_not_modified() -> None:
    dep = deployment("v3.0", 3, paused=True, annotations={CAUSE: "x"})
    history = [rs(1, "v1.0", {CAUSE: "y"}), rs(3, "v3.0"), rs(2, "v2.0")]
    before = copy.deepcopy((dep, history))
    plan = undo(dep, history, None, unpause=True)
    assert (dep, history) == before
    # The patch does not share structure with the inputs either.
    op(plan.patch, "/spec/template")["metadata"]["labels"]["x"] = "y"
    assert (dep, history) == before
