"""Payload key names: namespaced by service, data_id, op and value; every component escaped
so no value path can shift the fields or collide with a request's key set.
"""

from __future__ import annotations

import pytest

from pipeserve.payload import keys


def test_a_value_key_names_service_request_op_and_value() -> None:
    assert keys.value_key("imdb", 7, "bow", "out['image']") == (
        "pipeserve:imdb:7:bow:out%5B%27image%27%5D"
    )


def test_the_request_set_sits_next_to_the_request_values() -> None:
    assert keys.request_set("imdb", 7) == "pipeserve:imdb:7:keys"


@pytest.mark.parametrize(
    ("component", "escaped"),
    [
        ("plain_Name-1.0", "plain_Name-1.0"),
        ("a:b", "a%3Ab"),
        ("two words\n", "two%20words%0A"),
        ("glob*?[]", "glob%2A%3F%5B%5D"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
        (42, "42"),
    ],
)
def test_components_are_percent_encoded_outside_the_safe_set(
    component: str | int, escaped: str
) -> None:
    assert keys.escape(component) == escaped


def test_an_empty_component_is_refused() -> None:
    with pytest.raises(ValueError, match="payload key components must not be empty"):
        keys.value_key("imdb", 7, "", "out")


def test_a_colon_in_a_value_path_cannot_shift_the_fields() -> None:
    key = keys.value_key("imdb", "7", "bow", "a:b:c")

    assert key.split(":") == ["pipeserve", "imdb", "7", "bow", "a%3Ab%3Ac"]


def test_an_op_named_keys_does_not_collide_with_the_request_set() -> None:
    assert keys.value_key("imdb", 7, "keys", "x").count(":") == 4
    assert keys.request_set("imdb", 7).count(":") == 3


def test_a_key_space_binds_the_service() -> None:
    space = keys.KeySpace("imdb")

    assert space.value_key(7, "bow", "out") == keys.value_key("imdb", 7, "bow", "out")
    assert space.request_set(7) == keys.request_set("imdb", 7)
