"""The README as a user reads it: its API examples, run as written (each `curl` of the "API
examples" block goes through bash and curl to a live server, with only the host, the keys
and the person's id, the README's 17, which the first call's answer names, changed), and its
configuration table, which names every variable the code reads, with the code's defaults."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tracking.ingest.profile_tokens import redeem

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_block(heading: str) -> str:
    section = README.read_text().split(f"\n## {heading}\n", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def curl_commands(block: str) -> list[str]:
    """Each command from its `curl` line to the next comment, `curl` or blank line."""
    commands: list[str] = []
    for line in block.splitlines():
        if line.startswith("curl "):
            commands.append(line)
        elif line and not line.startswith("#") and commands:
            commands[-1] += "\n" + line
    return commands


def run(command: str, *, base_url: str, env: dict[str, str]) -> tuple[int, str]:
    command = command.replace("http://localhost:8000", base_url)
    result = subprocess.run(
        ["bash", "-c", command + " -sS -w '\\n%{http_code}'"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True,
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_api_examples_work_as_written(live, site, key, secret_key):
    commands = curl_commands(readme_block("API examples"))
    paths = [re.search(r"http://localhost:8000(\S*?)[\"\s]", c + " ").group(1) for c in commands]
    assert paths == [
        "/v1/batch",
        "/api/v1/people?q=ann@",
        "/api/v1/people/by-identity/u-42",
        "/api/v1/people/17/export",
        "/api/v1/people/17",
        "/api/v1/sites",
    ]
    env = {"WRITE_KEY": key, "SECRET_KEY": secret_key}
    status, body = run(commands[0], base_url=live.base_url, env=env)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["success"] is True and len(answer["profile_ids"]) == 1, answer
    person_id = answer["profile_ids"][0]
    replies = [
        run(command.replace("/people/17", f"/people/{person_id}"), base_url=live.base_url, env=env)
        for command in commands[1:]
    ]

    found, person, export, deleted, sites = replies
    assert found[0] == 200 and [p["id"] for p in json.loads(found[1])["results"]] == [redeem(person_id)]
    assert person[0] == 200 and json.loads(person[1])["properties"] == {"email": "ann@example.com", "plan": "pro"}
    assert export[0] == 200
    assert {e["type"] for e in json.loads(export[1])["events"]} >= {"Product Viewed", "identify"}
    assert deleted == (204, "")
    assert live.no_person("u-42")
    assert sites[0] == 200 and [s["id"] for s in json.loads(sites[1])["results"]] == [site.pk]


# --- the configuration table -------------------------------------------------------------

# Where operators' variables are read: settings, the embedded services, `make run`.
CONFIG_SOURCES = [
    "config/settings.py",
    "config/embedded.py",
    "tracking/management/commands/serve.py",
    "tracking/management/commands/bootstrap.py",
]
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def code_variables() -> dict[str, object]:
    """Every variable the code reads by name, with its default when that is a literal."""
    found: dict[str, object] = {}
    for source in CONFIG_SOURCES:
        for node in ast.walk(ast.parse((ROOT / source).read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            reader = ast.unparse(node.func)
            if not (reader.startswith("env.") or reader == "os.environ.get"):
                continue
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if default is None and reader == "os.environ.get" and len(node.args) > 1:
                default = node.args[1]
            try:
                value = ast.literal_eval(default) if default is not None else None
            except ValueError:
                value = None  # computed (a path under the data folder, an f-string)
            found.setdefault(node.args[0].value, value)
    return {name: value for name, value in found.items() if name not in NOT_SETTINGS}


def readme_variables() -> dict[str, str | None]:
    """The configuration table: each variable and its default when the cell is one value."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str | None] = {}
    for row in re.findall(r"^\| (.+?) \| (.+?) \| .+ \|$", section, re.M):
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])
        defaults = re.findall(r"`([^`]*)`", row[1])
        whole = re.fullmatch(r"(`[^`]*`(, | / )?)+", row[1]) is not None
        for index, name in enumerate(names):
            found[name] = defaults[index] if whole and len(defaults) == len(names) else None
    return found


def as_written(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def test_the_configuration_table_names_every_variable_with_its_default():
    code, readme = code_variables(), readme_variables()
    assert sorted(set(code) - set(readme)) == [], "read by the code, missing from the README"
    assert sorted(set(readme) - set(code)) == [], "in the README, read by nothing"
    documented = {name: readme[name] for name in code if readme[name] is not None and code[name] is not None}
    assert documented == {name: as_written(code[name]) for name in documented}


def test_secrets_are_read_from_files_as_the_readme_says(tmp_path):
    """`X_FILE=/path` reads X from a file for SECRET_KEY, DATABASE_URL, CELERY_BROKER_URL
    and EMAIL_URL (Docker and Kubernetes secrets end in a newline)."""
    values = {
        "SECRET_KEY": "secret-from-a-file",
        "DATABASE_URL": "postgres://reader:pw@db.example:5433/from_file",
        "CELERY_BROKER_URL": "redis://broker.example:6379/3",
        "EMAIL_URL": "smtp://mailer:pw@mail.example:587",
    }
    env = {name: value for name, value in os.environ.items() if name not in values}
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    script = (
        "import django; django.setup(); from django.conf import settings as s; import json;"
        "db = s.DATABASES['default'];"
        "print(json.dumps([s.SECRET_KEY, db['USER'], db['HOST'], db['PORT'], db['NAME'],"
        " s.CELERY_BROKER_URL, s.EMAIL_HOST, s.EMAIL_HOST_USER]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings", "FOOTPRINT_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "secret-from-a-file", "reader", "db.example", 5433, "from_file",
        "redis://broker.example:6379/3", "mail.example", "mailer",
    ]
