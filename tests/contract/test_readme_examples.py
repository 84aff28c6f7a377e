"""The README as a user reads it: its configuration table names every variable the code
reads, with the code's defaults."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


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
