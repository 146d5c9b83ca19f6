"""The app catalog: the hexo example loads, and every mistake names the app and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.catalog import Action, App, Catalog, Permissions, Rolling, Rule
from bot.errors import ConfigError, UserError
from commands.intents import Strategy
from sandbox.hexo import IMAGE_REPO, catalog

Obj = dict[str, Any]
USERS = {"alice": "UALICE1", "bob": "UBOB1"}
DIGEST = "sha256:" + "ab" * 32


def hexo(**changes: Any) -> Obj:
    data = catalog("devops", USERS)
    data["apps"]["hexo"].update(changes)
    return data


def without(key: str) -> Obj:
    data = hexo()
    del data["apps"]["hexo"][key]
    return data


def error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        Catalog.from_mapping(data)
    return str(info.value)


# --- The example -----------------------------------------------------------------------------------


def test_hexo_example_is_accepted() -> None:
    cat = Catalog.from_mapping(hexo())
    app = cat.apps["hexo"]
    assert app.name == "hexo"
    assert (app.namespace, app.deployment, app.container) == ("devops", "hexo", "hexo")
    assert app.image == IMAGE_REPO
    assert app.service == "hexo-service"
    assert app.strategies == (Strategy.ROLLING, Strategy.CANARY, Strategy.BLUEGREEN)
    assert app.default_strategy is Strategy.ROLLING
    assert (app.rolling.max_surge, app.rolling.max_unavailable) == (1, 0)
    assert app.permissions.release.users == ("UALICE1",)
    assert app.permissions.promote.users == ("UALICE1", "UBOB1")
    assert app.permissions.view is None
    assert app.progress_deadline_seconds == 600
    assert app.auto_rollback is True
    assert cat.namespaces() == {"devops"}


def test_defaults_for_a_minimal_app() -> None:
    app = Catalog.from_mapping(
        {"apps": {"blog": {"namespace": "web", "deployment": "blog", "container": "nginx", "image": "nginx"}}}
    ).apps["blog"]
    assert app.strategies == (Strategy.ROLLING,)
    assert app.default_strategy is Strategy.ROLLING
    assert app.service is None
    assert app.allow_image_override is False
    assert app.canary.steps == ()
    # Deny by default: nobody may do anything until the catalog says so.
    for action in Action:
        assert app.permissions.rule(action) == Rule()


def test_load_reads_yaml(tmp_path: Path) -> None:
    data = hexo()
    data["apps"]["blog"] = {
        "namespace": "web",
        "deployment": "blog",
        "container": "nginx",
        "image": "registry.example.org:5000/web/blog",
        "canary": {"steps": [1, "25%", "50%", "100%"]},
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    cat = Catalog.load(path)
    assert set(cat.apps) == {"hexo", "blog"}
    assert cat.apps["blog"].canary.steps == (1, "25%", "50%", "100%")
    assert cat.namespaces() == {"devops", "web"}
    assert cat == Catalog.from_mapping(data)


def test_percentages_and_numeric_strings() -> None:
    assert Rolling(max_surge="25%", max_unavailable="0").max_unavailable == 0
    assert Rolling(max_surge="25%").max_surge == "25%"
    assert Rolling(max_surge="100%", max_unavailable=3).max_unavailable == 3


# --- Mistakes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["namespace", "deployment", "container", "image"])
def test_missing_key_names_app_and_field(key: str) -> None:
    assert error(without(key)) == f"catalog: app 'hexo': {key}: Field required"


def test_config_error_is_a_user_error() -> None:
    assert issubclass(ConfigError, UserError)


@pytest.mark.parametrize("namespace", ["Dev_Ops", "devops-", "", "a" * 64, "dev ops"])
def test_bad_namespace(namespace: str) -> None:
    msg = error(hexo(namespace=namespace))
    assert msg.startswith("catalog: app 'hexo': namespace: ")
    assert "should" in msg


@pytest.mark.parametrize("value", ["lots", -1, "25", "1000%", "25 %", "%", 1.5])
def test_bad_max_surge(value: object) -> None:
    if value == "25":  # a numeric string is a number
        assert Catalog.from_mapping(hexo(rolling={"max_surge": value})).apps["hexo"].rolling.max_surge == 25
        return
    msg = error(hexo(rolling={"max_surge": value}))
    assert msg.startswith("catalog: app 'hexo': rolling.max_surge")


def test_bad_max_surge_message_says_what_is_allowed() -> None:
    assert "must be a number or a percentage like 25%" in error(hexo(rolling={"max_surge": "lots"}))
    assert "must be 0 or more" in error(hexo(rolling={"max_unavailable": -1}))
    assert "rolling.max_unavailable" in error(hexo(rolling={"max_unavailable": -1}))


@pytest.mark.parametrize("value", ["25%\n", "1\n"])
def test_max_surge_with_trailing_newline_is_refused(value: str) -> None:
    assert "rolling.max_surge" in error(hexo(rolling={"max_surge": value}))


def test_default_strategy_not_among_strategies() -> None:
    msg = error(hexo(strategies=["rolling"], default_strategy="canary"))
    assert msg.startswith("catalog: app 'hexo': ")
    assert "default_strategy 'canary' is not among strategies ['rolling']" in msg


def test_unknown_strategy() -> None:
    msg = error(hexo(strategies=["rolling", "yolo"]))
    assert msg.startswith("catalog: app 'hexo': strategies.1")


def test_blue_green_needs_a_service() -> None:
    msg = error(hexo(service=None))
    assert msg.startswith("catalog: app 'hexo': ")
    assert "blue-green needs `service`" in msg
    # Without blue-green no service is needed.
    assert (
        Catalog.from_mapping(hexo(service=None, strategies=["rolling", "canary"])).apps["hexo"].service
        is None
    )


@pytest.mark.parametrize("image", [f"{IMAGE_REPO}@{DIGEST}", f"{IMAGE_REPO}:", "registry.sword.org/ng inx"])
def test_image_with_digest_or_blank_is_refused(image: str) -> None:
    msg = error(hexo(image=image))
    assert msg.startswith("catalog: app 'hexo': ")
    assert "image is a repository without tag or digest" in msg


@pytest.mark.parametrize("image", [f"{IMAGE_REPO}:v1.0", "nginx:latest", "registry:5000/team/hexo:v1"])
def test_image_with_a_tag_is_refused(image: str) -> None:
    assert "image is a repository without tag or digest" in error(hexo(image=image))


@pytest.mark.parametrize("image", ["registry.sword.org:5000/nginx", "nginx", "localhost/team/hexo"])
def test_registry_port_is_not_a_tag(image: str) -> None:
    assert Catalog.from_mapping(hexo(image=image)).apps["hexo"].image == image


@pytest.mark.parametrize(
    ("steps", "hint"),
    [
        ([0], "a step is 1 or more pods"),
        ([1, -2], "a step is 1 or more pods"),
        (["0%"], "must be a pod count or a percentage 1%..100%"),
        (["150%"], "must be a pod count or a percentage 1%..100%"),
        (["half"], "must be a pod count or a percentage 1%..100%"),
        (["50"], "must be a pod count or a percentage 1%..100%"),
    ],
)
def test_bad_canary_steps(steps: list[object], hint: str) -> None:
    msg = error(hexo(canary={"steps": steps}))
    assert msg.startswith("catalog: app 'hexo': canary.steps")
    assert hint in msg


def test_negative_analysis_minutes() -> None:
    assert "canary.analysis_minutes" in error(hexo(canary={"analysis_minutes": -1}))


def test_unknown_app_field_is_named() -> None:
    msg = error(hexo(replicas=6))
    assert msg == "catalog: app 'hexo': replicas: Extra inputs are not permitted"
    assert "rolling.surge" in error(hexo(rolling={"surge": 1}))


def test_bad_user_id_in_permissions() -> None:
    data = hexo()
    data["apps"]["hexo"]["permissions"]["release"] = {"users": ["alice"]}
    assert error(data).startswith("catalog: app 'hexo': permissions.release.users.0")


def test_errors_name_the_failing_app_among_several() -> None:
    data = hexo()
    data["apps"]["blog"] = copy.deepcopy(data["apps"]["hexo"])
    data["apps"]["blog"]["namespace"] = "BAD"
    assert error(data).startswith("catalog: app 'blog': namespace")


def test_unknown_top_level_key() -> None:
    data = hexo()
    data["defaults"] = {}
    data["zzz"] = 1
    assert (
        error(data)
        == "catalog: unknown top-level key(s) ['defaults', 'zzz']; allowed: `apps`, `clusters`, `freeze`, `freeze_override`, `break_glass`"
    )


@pytest.mark.parametrize("data", [None, [], "apps", {}, {"apps": {}}, {"apps": None}, {"apps": ["hexo"]}])
def test_empty_or_shapeless_catalog(data: Any) -> None:
    assert error(data) == "catalog: expected a mapping with `apps:` holding at least one app"


def test_app_body_not_a_mapping() -> None:
    assert error({"apps": {"hexo": "nginx"}}) == "catalog: app 'hexo': expected a mapping"


def test_name_in_body_cannot_disagree_with_the_key() -> None:
    data = hexo(name="other")
    try:
        cat = Catalog.from_mapping(data)
    except ConfigError:
        return
    assert cat.apps["hexo"].name == "hexo"


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        Catalog.load(path)
    message = str(info.value)
    assert message.startswith(f"catalog: cannot read {path}: No such file or directory (")
    assert "--catalog" in message and "RELEASE_BOT_CATALOG" in message


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^catalog: cannot read .*: Is a directory \("):
        Catalog.load(tmp_path)


def test_load_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("apps:\n  hexo: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Catalog.load(path)
    assert str(info.value).startswith(f"catalog: {path} is not valid YAML: ")
    assert isinstance(info.value.__cause__, yaml.YAMLError)


def test_load_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping with `apps:`"):
        Catalog.load(path)


def test_load_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(b"apps:\n  hexo: \xff\xfe\n")
    with pytest.raises(ConfigError, match="catalog: cannot read"):
        Catalog.load(path)


# --- App.image_for ---------------------------------------------------------------------------------


def test_image_for() -> None:
    app = Catalog.from_mapping(hexo()).apps["hexo"]
    assert app.image_for("v2.0", full_reference=False) == f"{IMAGE_REPO}:v2.0"
    assert app.image_for(DIGEST, full_reference=False) == f"{IMAGE_REPO}@{DIGEST}"
    other = "registry.example.org/other:v9"
    assert app.image_for(other, full_reference=True) == other


# --- Permissions -----------------------------------------------------------------------------------


def test_view_defaults_to_the_union_of_the_other_rules() -> None:
    perms = Permissions(
        release=Rule(users=("UA1",), usergroups=("SREL",), channels=("CREL",)),
        promote=Rule(users=("UA1", "UB1"), usergroups=("SPRO",)),
        rollback=Rule(users=("UC1",)),
    )
    view = perms.rule(Action.VIEW)
    assert sorted(view.users) == ["UA1", "UB1", "UC1"]
    assert sorted(view.usergroups) == ["SPRO", "SREL"]
    assert view.channels == ()


def test_explicit_view_rule_is_used() -> None:
    view = Rule(users=("UV1",))
    perms = Permissions(view=view, release=Rule(users=("UA1",)))
    assert perms.rule(Action.VIEW) == view


def test_rule_per_action() -> None:
    perms = Permissions(
        release=Rule(users=("UA1",)), promote=Rule(users=("UB1",)), rollback=Rule(usergroups=("SOPS",))
    )
    assert perms.rule(Action.RELEASE).users == ("UA1",)
    assert perms.rule(Action.PROMOTE).users == ("UB1",)
    assert perms.rule(Action.ROLLBACK).usergroups == ("SOPS",)


def test_app_model_is_frozen() -> None:
    app = App.model_validate(hexo()["apps"]["hexo"] | {"name": "hexo"})
    with pytest.raises(ValueError, match="frozen"):
        app.namespace = "other"


def test_environments_become_one_app_each_with_their_own_fields() -> None:
    base = {
        "namespace": "staging",
        "deployment": "hexo",
        "container": "hexo",
        "image": "registry.sword.org/nginx",
        "permissions": {"release": {"users": ["U0ALICE"]}},
        "environments": {
            "staging": {},
            "prod": {"namespace": "prod", "permissions": {"release": {"users": ["U0BOSS"]}}},
        },
    }
    catalog = Catalog.from_mapping({"apps": {"hexo": base}})
    assert sorted(catalog.apps) == ["hexo-prod", "hexo-staging"]
    assert catalog.apps["hexo-staging"].namespace == "staging"
    assert catalog.apps["hexo-staging"].permissions.release.users == ("U0ALICE",)
    assert catalog.apps["hexo-prod"].namespace == "prod"
    assert catalog.apps["hexo-prod"].permissions.release.users == ("U0BOSS",)


@pytest.mark.parametrize("envs", [{}, {"Prod": {}}, {"prod": "x"}])
def test_bad_environments_are_refused(envs: object) -> None:
    body = {"namespace": "d", "deployment": "h", "container": "h", "image": "r/h", "environments": envs}
    with pytest.raises(ConfigError, match="environment"):
        Catalog.from_mapping({"apps": {"hexo": body}})
