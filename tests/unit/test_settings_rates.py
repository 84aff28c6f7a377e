"""The management API's rate limits and the cache they count in, read from the
environment and refused at boot when they make no sense."""

from __future__ import annotations

import subprocess

import pytest

from tests.unit.test_settings_secrets import _load_settings

RATES = "REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']"


def test_the_rates_default_to_600_a_minute_60_for_export_and_delete_and_30_wrong_keys(tmp_path):
    shown = _load_settings(tmp_path, show=RATES)
    assert shown == "{'api': '600/minute', 'api_heavy': '60/minute', 'api_auth_failure': '30/minute'}"


def test_the_rates_are_read_from_the_environment(tmp_path):
    shown = _load_settings(
        tmp_path, show=RATES, API_RATE_LIMIT=" 1200/hour", API_HEAVY_RATE_LIMIT="off", API_AUTH_FAILURE_RATE_LIMIT="10/hour"
    )
    assert shown == "{'api': '1200/hour', 'api_heavy': None, 'api_auth_failure': '10/hour'}"
    shown = _load_settings(tmp_path, show=RATES, API_AUTH_FAILURE_RATE_LIMIT="OFF")
    assert shown.endswith("'api_auth_failure': None}")


@pytest.mark.parametrize("name", ["API_HEAVY_RATE_LIMIT", "API_AUTH_FAILURE_RATE_LIMIT"])
@pytest.mark.parametrize("bad", ["600", "600/moon", "600/m", "0/minute", "-5/minute", "many/minute", ""])
def test_a_rate_that_is_not_one_is_refused_at_boot_naming_the_variable(tmp_path, name, bad):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _load_settings(tmp_path, **{name: bad})
    assert f"{name} must be <count>/second, /minute, /hour or /day, or off" in refused.value.stderr


def test_the_cache_is_shared_files_under_the_data_folder_unless_cache_url_names_one(tmp_path):
    default = _load_settings(tmp_path, show="CACHES['default']")
    assert "FileBasedCache" in default and str(tmp_path / "cache") in default
    redis = _load_settings(tmp_path, show="CACHES['default']", CACHE_URL="redis://cache.internal:6379/2")
    assert redis == "{'BACKEND': 'django.core.cache.backends.redis.RedisCache', 'LOCATION': 'redis://cache.internal:6379/2'}"


def test_a_cache_url_of_no_known_kind_is_refused_at_boot(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _load_settings(tmp_path, CACHE_URL="reddis://cache.internal:6379")
    assert "Invalid cache schema reddis" in refused.value.stderr
