"""Profile ids handed to clients carry a keyed tag; only such ids are taken back."""

from __future__ import annotations

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.tracking.test_segment import one
from tracking.ingest import tracardi
from tracking.ingest.profile_tokens import MAX_PROFILE_ID, issue, redeem
from tracking.ingest.schema import MessageError, clean_profile_id, client_profile_id

ids = st.integers(min_value=1, max_value=MAX_PROFILE_ID)


@given(ids)
def test_an_issued_id_redeems_to_itself(profile_id):
    token = issue(profile_id)
    assert token.startswith(f"{profile_id}.")
    assert redeem(token) == profile_id


@given(ids, st.data())
def test_any_other_tag_is_refused(profile_id, data):
    number, _, tag = issue(profile_id).partition(".")
    other = data.draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=20))
    if other != tag:
        assert redeem(f"{number}.{other}") is None
    # Nor does one id's tag vouch for its neighbour.
    if profile_id < MAX_PROFILE_ID:
        assert redeem(f"{profile_id + 1}.{tag}") is None


@pytest.mark.parametrize("text", ["17", "", ".", "17.", ".abc", "-1.abc", "0.abc", "bf0c8c8d-3387", "１７.abc"])
def test_what_we_did_not_issue_is_unknown(text):
    assert redeem(text) is None


def test_a_token_survives_a_key_rotation_while_the_old_key_is_a_fallback():
    with override_settings(SECRET_KEY="old-key-" + "x" * 50):
        token = issue(42)
    with override_settings(SECRET_KEY="new-key-" + "y" * 50, SECRET_KEY_FALLBACKS=["old-key-" + "x" * 50]):
        assert redeem(token) == 42
    with override_settings(SECRET_KEY="new-key-" + "y" * 50, SECRET_KEY_FALLBACKS=[]):
        assert redeem(token) is None


@pytest.mark.parametrize("sent", [17, 17.0, "17", " 17 "])
def test_a_bare_profile_id_from_a_client_is_unknown(sent):
    """A number is no proof: the client could have guessed it."""
    assert clean_profile_id(client_profile_id(sent)) is None
    assert one({"type": "track", "userId": "u", "profileId": sent, "event": "e"}).profile_id is None


def test_a_token_from_a_client_names_its_profile():
    assert clean_profile_id(issue(17)) == 17
    assert clean_profile_id(f" {issue(17)} ") == 17
    assert one({"type": "track", "profileId": issue(17), "event": "e"}).profile_id == 17


@pytest.mark.parametrize("junk", ["undefined", "null", -3, True, {"id": 1}, ["x"]])
def test_junk_is_still_an_error(junk):
    with pytest.raises(MessageError):
        clean_profile_id(client_profile_id(junk))


def test_tracardi_keeps_the_token_we_answered_with():
    answer = tracardi.answer(17, "s-1")
    assert answer["profile"]["id"] == issue(17)
    payload = {
        "source": {"id": "key"}, "session": {"id": "s-1"}, "profile": answer["profile"],
        "events": [{"type": "page-view"}],
    }
    assert tracardi.parse(payload).profile_id == 17
    payload["profile"] = {"id": 17}
    assert tracardi.parse(payload).profile_id is None
