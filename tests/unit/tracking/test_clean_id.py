"""``clean_id`` takes a fast path for ids that are already clean: whatever the input, it
answers as the plain rules below (the function before that path) do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking.ingest.schema import JUNK_IDS, MAX_ID_LENGTH, UNSTORABLE, MessageError, clean_id


def reference(value: Any, field_name: str, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise MessageError(field_name, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MessageError(field_name, "must be a string")
    text = str(value).strip() if not isinstance(value, float) else repr(value)
    if text.strip().lower() in JUNK_IDS:
        raise MessageError(field_name, f"{text!r} is not a usable id")
    if len(text) > MAX_ID_LENGTH:
        raise MessageError(field_name, f"is longer than {MAX_ID_LENGTH} characters")
    if "\x00" in text:
        raise MessageError(field_name, UNSTORABLE)
    try:
        text.encode()
    except UnicodeEncodeError:
        raise MessageError(field_name, UNSTORABLE) from None
    return text


def outcome(function, value, required=False):
    try:
        return ("ok", function(value, "userId", required=required))
    except MessageError as exc:
        return ("error", exc.field, exc.reason)


junk = st.sampled_from(sorted(JUNK_IDS)).flatmap(
    lambda j: st.tuples(st.sampled_from(["", " ", "\t", "\x1f", "\n"]), st.booleans()).map(
        lambda pad: pad[0] + (j.upper() if pad[1] else j) + pad[0]
    )
)
ids = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=20),
    st.text(alphabet="ab \t\x00\x1c\x7f", max_size=6),
    st.integers(MAX_ID_LENGTH - 2, MAX_ID_LENGTH + 2).map(lambda n: "x" * n),
    junk,
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=400)
@given(value=ids, required=st.booleans())
def test_it_answers_as_the_plain_rules_do(value, required):
    assert outcome(clean_id, value, required) == outcome(reference, value, required)


@pytest.mark.parametrize("value", ["Null", " guest ", "\x1fnone", "a\x00b", "", " ", "\ud800"])
def test_the_ids_nearest_the_fast_path_are_still_refused(value):
    assert outcome(clean_id, value)[0] == "error"
    assert outcome(clean_id, value) == outcome(reference, value)
