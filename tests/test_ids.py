"""Identifier rules: what is accepted, what is refused, and every written form."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbank_core.errors import InvalidIdentifier
from nbank_core.ids import (
    MAX_ID_LENGTH,
    auto_id,
    full_url,
    id_from_filename,
    parse_identifier,
    validate_id,
)

ID_CHARS = string.ascii_letters + string.digits + "_-"
valid_ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=MAX_ID_LENGTH)


@given(valid_ids)
def test_valid_ids_round_trip_through_every_form(name):
    assert validate_id(name) == name
    assert parse_identifier(name) == (None, name)
    assert parse_identifier(f"nbank:{name}") == (None, name)
    assert parse_identifier(f"nbank://{name}") == (None, name)
    url = full_url("http://127.0.0.1:8000/neurobank/", name)
    assert parse_identifier(url) == ("http://127.0.0.1:8000/neurobank/", name)


@given(st.text().filter(lambda s: s == "" or any(c not in ID_CHARS for c in s)))
def test_any_string_outside_the_charset_is_refused(text):
    with pytest.raises(InvalidIdentifier):
        validate_id(text)


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", "/etc/passwd", "a.b", "a\0b", "x" * 256, "é", "a b"]
)
def test_traversal_and_odd_ids_are_refused(bad):
    with pytest.raises(InvalidIdentifier) as err:
        parse_identifier(bad)
    assert "\n" not in str(err.value)


def test_id_from_filename_drops_only_the_last_suffix():
    assert id_from_filename("/data/st32_1_2_1.wav") == "st32_1_2_1"
    assert id_from_filename("noext") == "noext"
    with pytest.raises(InvalidIdentifier):
        id_from_filename("a.tar.gz")  # stem 'a.tar' holds a dot


def test_bad_url_forms_are_refused():
    with pytest.raises(InvalidIdentifier):
        parse_identifier("http://host/neurobank/other/x/")


def test_auto_ids_look_like_the_registry_s():
    names = {auto_id() for _ in range(200)}
    assert len(names) == 200
    assert all(
        len(n) == 8 and set(n) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
        for n in names
    )
