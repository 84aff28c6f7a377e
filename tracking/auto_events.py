"""Auto-event rules: events the JS tracker records by itself, configured per site.

A rule is ``{"kind": "page" | "click", "match": ..., "event": ...}`` in
``Site.auto_event_rules``:
- ``page``: when the page's address matches ``match``, a URL pattern where ``*`` stands
  for anything. It is compared with the path (``/checkout/*``), with path and query when
  it has a ``?`` (``/search?q=*``), with the whole address when it starts with http(s);
- ``click``: when a click lands on (or inside) an element matching the CSS selector.

The checks here catch what a marketer can get wrong in a form; the browser is the final
judge of a selector (the Settings page checks it there too, and the tracker skips a
selector its browser refuses).
"""

from __future__ import annotations

from typing import Any

KINDS = {"page": "Page view", "click": "Click"}
MAX_MATCH_LENGTH = 500
MAX_EVENT_LENGTH = 255

_SELECTOR_STARTS = set("*.#[:_-\\")


def check_url_pattern(value: str) -> str:
    """A page rule's pattern, trimmed; raises ValueError with the reason."""
    pattern = value.strip()
    if not pattern:
        raise ValueError("Enter a URL pattern, for example /pricing or /products/*.")
    if len(pattern) > MAX_MATCH_LENGTH:
        raise ValueError(f"Keep the pattern under {MAX_MATCH_LENGTH} characters.")
    if any(ch.isspace() for ch in pattern):
        raise ValueError("A URL pattern cannot contain spaces.")
    if not pattern.startswith(("/", "*", "http://", "https://")):
        raise ValueError("Start the pattern with / (a path such as /checkout/*), with * or with http(s)://.")
    return pattern


def check_selector(value: str) -> str:
    """A click rule's CSS selector, trimmed; raises ValueError with the reason."""
    selector = value.strip()
    if not selector:
        raise ValueError("Enter a CSS selector, for example button.buy or a[href*='/checkout'].")
    if len(selector) > MAX_MATCH_LENGTH:
        raise ValueError(f"Keep the selector under {MAX_MATCH_LENGTH} characters.")
    if any(ch in selector for ch in "{};<"):
        raise ValueError("A CSS selector cannot contain {, }, ; or <.")
    if selector[0] in ">+~," or selector[-1] in ">+~,\\":
        raise ValueError("A selector cannot start or end with a combinator (>, +, ~) or a comma.")
    if not (selector[0].isalpha() or selector[0] in _SELECTOR_STARTS):
        raise ValueError(f"A selector cannot start with {selector[0]!r}: start with a tag, ., #, [ or :.")
    if any(not part.strip() for part in _split_outside_brackets(selector)):
        raise ValueError("A selector list has an empty part (two commas in a row?).")
    _check_balanced(selector)
    return selector


def check_event_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise ValueError("Enter the name of the event to record, for example Pricing Viewed.")
    if len(name) > MAX_EVENT_LENGTH:
        raise ValueError(f"Keep the event name under {MAX_EVENT_LENGTH} characters.")
    return name


def check_rules(value: Any) -> list[dict[str, str]]:
    """A whole ``Site.auto_event_rules`` list as JSON gives it (the admin edits it raw):
    each rule checked as the Settings page checks its rows; raises ValueError naming the
    rule (numbered from 1) and the reason."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValueError('Enter a list of rules, e.g. [{"kind": "page", "match": "/pricing*", "event": "Pricing Viewed"}].')
    rules = []
    for number, rule in enumerate(value, start=1):
        if not isinstance(rule, dict) or set(rule) != {"kind", "match", "event"}:
            raise ValueError(f'Rule {number}: give exactly "kind", "match" and "event".')
        if rule["kind"] not in KINDS:
            raise ValueError(f'Rule {number}: kind must be one of {", ".join(KINDS)}.')
        if not isinstance(rule["match"], str) or not isinstance(rule["event"], str):
            raise ValueError(f'Rule {number}: "match" and "event" are text.')
        check = check_url_pattern if rule["kind"] == "page" else check_selector
        try:
            rules.append({"kind": rule["kind"], "match": check(rule["match"]), "event": check_event_name(rule["event"])})
        except ValueError as exc:
            raise ValueError(f"Rule {number}: {exc}") from None
    return rules


def _check_balanced(selector: str) -> None:
    closing = {"(": ")", "[": "]"}
    stack: list[str] = []
    quote = ""
    escaped = False
    for ch in selector:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in closing:
            stack.append(closing[ch])
        elif ch in ")]":
            if not stack or stack.pop() != ch:
                raise ValueError(f"The selector has a {ch!r} that closes nothing.")
    if quote:
        raise ValueError(f"The selector has an unclosed {quote} quote.")
    if stack:
        raise ValueError(f"The selector is missing a closing {stack[-1]!r}.")


def _split_outside_brackets(selector: str) -> list[str]:
    parts, depth, current, quote = [], 0, "", ""
    for ch in selector:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return parts
