from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from tracking import keys, services
from tracking.models import SecretKey, WriteKey


def test_it_signs_identities_with_hmac_sha256_hex():
    # RFC 4231-style check against a value computed independently (openssl dgst -sha256 -hmac).
    assert keys.sign_identity("key", "The quick brown fox jumps over the lazy dog") == (
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


@given(secret=st.text(min_size=1), identity=st.text(min_size=1))
def test_it_accepts_exactly_the_right_signature(secret, identity):
    signature = keys.sign_identity(secret, identity)
    assert keys.check_identity_signature(secret, identity, signature)
    assert keys.check_identity_signature(secret, identity, signature.upper())
    assert not keys.check_identity_signature(secret + "x", identity, signature)
    assert not keys.check_identity_signature(secret, identity, None)
    assert not keys.check_identity_signature(secret, identity, "")


def test_it_parses_lookup_only_from_well_formed_secret_keys():
    key, lookup, _ = keys.new_secret_key()
    assert keys.lookup_of(key) == lookup
    assert keys.lookup_of("wk_abc") is None
    assert keys.lookup_of("sk_12") is None


@pytest.mark.django_db
def test_it_stores_only_the_digest_of_a_secret_key(site):
    issued = services.secret_key_issue(site=site)
    row = SecretKey.objects.get(pk=issued.record.pk)
    assert issued.key not in (row.digest, row.lookup)
    assert row.digest == keys.digest(issued.key)
    assert services.site_for_secret_key(issued.key) == site


@pytest.mark.django_db
def test_it_rejects_wrong_revoked_and_malformed_secret_keys(site):
    issued = services.secret_key_issue(site=site)
    tampered = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    assert services.site_for_secret_key(tampered) is None
    assert services.site_for_secret_key("") is None
    assert services.site_for_secret_key("Bearer nonsense") is None
    issued.record.revoke()
    assert services.site_for_secret_key(issued.key) is None


@pytest.mark.django_db
def test_it_records_secret_key_use(site):
    issued = services.secret_key_issue(site=site)
    services.site_for_secret_key(issued.key)
    issued.record.refresh_from_db()
    assert issued.record.last_used_at is not None


@pytest.mark.django_db
def test_it_rotates_write_keys_with_a_grace_period(site):
    old = site.write_keys.get()
    new = services.write_key_rotate(site=site)
    old.refresh_from_db()
    assert new.is_active and old.is_active  # both work during the rollout
    assert old.expires_at is not None
    assert timedelta(hours=23) < old.expires_at - timezone.now() <= WriteKey.ROTATION_GRACE
    assert new.expires_at is None
    assert services.site_for_write_key(old.key) == site

    WriteKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.site_for_write_key(old.key) is None
    assert services.site_for_write_key(new.key) == site


@pytest.mark.django_db
def test_it_does_not_extend_an_earlier_expiry_when_rotating_twice(site):
    old = site.write_keys.get()
    soon = timezone.now() + timedelta(hours=1)
    WriteKey.objects.filter(pk=old.pk).update(expires_at=soon)
    services.write_key_rotate(site=site)
    old.refresh_from_db()
    assert old.expires_at == soon


@pytest.mark.django_db
def test_it_revokes_write_keys(site):
    key = site.write_keys.get()
    key.revoke()
    assert services.site_for_write_key(key.key) is None
    assert site.primary_write_key() is None


@pytest.mark.django_db
def test_it_regenerates_the_signing_secret(site):
    before = site.signing_secret
    after = site.regenerate_signing_secret()
    site.refresh_from_db()
    assert after != before and site.signing_secret == after and len(after) == 64
