"""The demo traffic (tracking/demo.py) looks like a shop's: shoppers keep the hours and
the week of people, arrive every day up to today, and a new device knows nobody."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tracking.demo import demo_traffic
from tracking.ingest.schema import Kind

NOW = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def people():
    return list(demo_traffic(seed=42, people=1500, days=56, now=NOW))


def visit_starts(people):
    """The first call of each visit (calls of a person more than 30 minutes apart)."""
    for messages in people:
        previous = None
        for m in messages:
            if previous is None or m.timestamp - previous > timedelta(minutes=30):
                yield m.timestamp
            previous = m.timestamp


def test_everyone_arrives_before_now(people):
    assert all(people)  # nobody's first visit falls in the last minutes, left out


def test_visits_keep_the_hours_of_shoppers_in_europe(people):
    hours = Counter(at.hour for at in visit_starts(people))
    total = sum(hours.values())
    night = sum(hours[h] for h in range(1, 6))  # 2 to 7 in the morning, Central European Time
    evening = sum(hours[h] for h in range(17, 21))
    assert night / total < 0.06  # 5 of 24 hours: 21% with no rhythm
    assert evening / total > 0.25  # 4 of 24 hours: 17% with no rhythm


def test_saturday_is_the_quiet_day_of_the_week(people):
    start = (NOW - timedelta(days=56)).date() + timedelta(days=1)
    starts = [at for at in visit_starts(people) if start <= at.date() < NOW.date()]  # 8 whole weeks
    weekdays = Counter(at.weekday() for at in starts)
    monday_to_thursday = sum(weekdays[d] for d in range(4)) / 4
    assert weekdays[5] < 0.8 * monday_to_thursday  # 0.86 with no rhythm (chance)
    assert weekdays[5] < weekdays[6]


def test_new_shoppers_arrive_every_day_up_to_yesterday(people):
    first_visits = Counter(messages[0].timestamp.date() for messages in people)
    days = [(NOW - timedelta(days=n)).date() for n in range(1, 56)]
    average = sum(first_visits[d] for d in days) / len(days)
    quiet = {d: first_visits[d] for d in days if first_visits[d] < 0.4 * average}
    assert not quiet, f"about {average:.0f} new shoppers a day, but {quiet}"


def test_a_new_device_does_not_remember_a_login(people):
    """The first call from a device is anonymous: a person seen before logs in there (an
    identify that merges the device's anonymous profile), or stays unknown on it."""
    firsts: dict[str, object] = {}
    merges = 0
    for messages in people:
        devices = []
        for m in messages:
            if m.anonymous_id not in firsts:
                firsts[m.anonymous_id] = m.user_id
                devices.append(m.anonymous_id)
        for m in messages:
            if m.kind is Kind.IDENTIFY and devices.index(m.anonymous_id) > 0 and m.traits == {}:
                merges += 1
                break
    assert set(firsts.values()) == {None}
    assert merges > 20


def test_sign_ups_give_a_name_email_and_plan(people):
    traits = [m.traits for messages in people for m in messages if m.kind is Kind.IDENTIFY and "email" in m.traits]
    assert len(traits) > 200
    for t in traits:
        assert t["name"] == f"{t['first_name']} {t['last_name']}"
        assert t["plan"] in ("free", "pro")

