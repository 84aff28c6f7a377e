"""One-line summaries of events and property values on the people pages."""

from types import SimpleNamespace

from profiles.templatetags.people import event_summary, event_url, json_value


def ev(properties=None, context=None):
    return SimpleNamespace(properties=properties or {}, context=context or {})


def test_it_prefers_the_page_url_from_the_context():
    assert event_url(ev({"url": "https://b"}, {"page": {"url": "https://a"}})) == "https://a"
    assert event_url(ev({"url": "https://b"})) == "https://b"
    assert event_url(ev({"path": "/x"}, {"page": "not a dict"})) == "/x"
    assert event_url(ev()) == ""


def test_it_summarises_well_known_properties_first_and_counts_the_rest():
    summary = event_summary(ev({"zeta": 1, "alpha": 2, "product": "Shoe", "total": 20, "url": "https://x"}))
    assert summary == "product=Shoe · total=20 · alpha=2 · +1"
    assert event_summary(ev({"name": "x" * 80})) == "name=" + "x" * 60 + "…"
    assert event_summary(ev()) == ""


def test_it_shows_strings_bare_and_other_values_as_json():
    assert json_value("Berlin") == "Berlin"
    assert json_value({"a": [1, True, None]}) == '{"a": [1, true, null]}'
    assert json_value(3.5) == "3.5"
