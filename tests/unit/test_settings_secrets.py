"""Django's SECRET_KEY, when generated into the data folder, is for this user's eyes only:
whoever reads it signs sessions (logs in as anyone, the admin included)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def _load_settings(data_dir: Path, *, show: str = "", **more_env: str) -> str:
    """Load the settings in a fresh process with ``more_env``; prints ``show``'s value."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SECRET_KEY_FILE")}
    env |= {
        "FOOTPRINT_DATA_DIR": str(data_dir),
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",  # never connected to
        "CELERY_BROKER_URL": "memory://",
        **more_env,
    }
    code = "import config.settings as s" + (f"; print(s.{show})" if show else "")
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=BASE_DIR, env=env, check=True, timeout=60, capture_output=True, text=True,
    ).stdout.strip()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_generated_secret_key_is_readable_by_its_owner_only(tmp_path):
    _load_settings(tmp_path)
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip()
    assert _mode(key_file) == 0o600


def test_a_secret_key_file_left_readable_by_others_is_closed(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("k" * 50)
    key_file.chmod(0o644)
    _load_settings(tmp_path)
    assert _mode(key_file) == 0o600 and key_file.read_text() == "k" * 50


def test_hsts_is_configured_from_the_environment(tmp_path):
    assert _load_settings(tmp_path, show="SECURE_HSTS_SECONDS") == "0"
    assert _load_settings(tmp_path, show="SECURE_HSTS_SECONDS", SECURE_HSTS_SECONDS="31536000") == "31536000"


def test_a_setting_that_would_store_nothing_is_refused_at_boot(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _load_settings(tmp_path, INGEST_DRAINS="0")
    assert "INGEST_DRAINS must be 1 or more" in refused.value.stderr
