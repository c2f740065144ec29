"""The create-or-patch diff: what a patch holds, and that nothing is sent when nothing differs."""

from __future__ import annotations

from pipeserve.operator import apply

RENDERED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "demo-bow", "namespace": "default", "labels": {"a": "1"}},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "op", "image": "x:1", "resources": {"limits": {"cpu": "1"}}}]}},
    },
}


def test_server_defaults_do_not_count_as_changes() -> None:
    wanted = apply.with_last_applied(RENDERED)
    live = apply.with_last_applied(RENDERED)
    live["metadata"].update(uid="u", resourceVersion="7", labels={"a": "1", "added-by-someone": "x"})
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["progressDeadlineSeconds"] = 600
    live["status"] = {"readyReplicas": 2}
    assert apply.merge_patch(wanted, live, apply.with_last_applied(RENDERED)) == {}


def test_a_changed_field_is_patched_and_a_list_replaced_whole() -> None:
    last = apply.with_last_applied(RENDERED)
    changed = apply.with_last_applied(
        {**RENDERED, "spec": {**RENDERED["spec"], "template": {"spec": {"containers": [{"name": "op", "image": "x:2"}]}}}}
    )
    patch = apply.merge_patch(changed, last, last)
    assert patch["spec"] == {"template": {"spec": {"containers": [{"name": "op", "image": "x:2"}]}}}
    assert set(patch["metadata"]) == {"annotations"}  # the record of what was applied


def test_a_field_the_last_rendering_set_and_this_one_drops_is_deleted() -> None:
    last = apply.with_last_applied(RENDERED)
    without_replicas = {**RENDERED, "spec": {"template": RENDERED["spec"]["template"]}}
    patch = apply.merge_patch(apply.with_last_applied(without_replicas), last, last)
    assert patch["spec"] == {"replicas": None}


def test_owned_by_matches_the_owner_uid_only() -> None:
    child = {"metadata": {"ownerReferences": [{"uid": "u-1"}]}}
    assert apply.owned_by(child, "u-1")
    assert not apply.owned_by(child, "u-2")
    assert not apply.owned_by({"metadata": {}}, "u-1")
