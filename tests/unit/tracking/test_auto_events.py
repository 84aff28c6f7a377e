from urllib.parse import parse_qsl, urlsplit

import pytest

from tracking import auto_events, keys


@pytest.mark.parametrize("pattern", ["/pricing", "/products/*", "*/thank-you", "/search?q=*", "https://shop.example/*"])
def test_it_accepts_url_patterns(pattern):
    assert auto_events.check_url_pattern(f"  {pattern} ") == pattern


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "Enter a URL pattern"),
        ("pricing page", "cannot contain spaces"),
        ("pricing", "Start the pattern with /"),
        ("/" + "a" * 600, "under 500"),
    ],
)
def test_it_explains_bad_url_patterns(pattern, reason):
    with pytest.raises(ValueError, match=reason):
        auto_events.check_url_pattern(pattern)


@pytest.mark.parametrize(
    "selector",
    [
        "button.buy",
        "#checkout",
        "a[href*='/checkout']",
        'a[href^="https://"], button[data-track]',
        "ul > li:nth-child(2n+1) a",
        "*",
        ":is(.a, .b) span",
        "div.price\\:old",
    ],
)
def test_it_accepts_css_selectors(selector):
    assert auto_events.check_selector(selector) == selector


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        ("", "Enter a CSS selector"),
        ("button { color: red }", "cannot contain"),
        ("> a", "cannot start or end with a combinator"),
        ("a,", "cannot start or end"),
        ("a,, b", "empty part"),
        ("a[href='x'", "missing a closing"),
        ("a)", "closes nothing"),
        ("a[title='x]", "unclosed"),
        ("1abc", "cannot start with '1'"),
    ],
)
def test_it_explains_bad_css_selectors(selector, reason):
    with pytest.raises(ValueError, match=reason):
        auto_events.check_selector(selector)


def test_it_adds_the_signed_person_parameters_to_a_link():
    link = keys.add_identity_params(
        "https://shop.example/sale?utm_source=letter&fp_id=old&fp_sig=old#top", "reader@example.com", "s3cret"
    )
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == ("https", "shop.example", "/sale", "top")
    assert parse_qsl(parts.query) == [
        ("utm_source", "letter"),
        ("fp_id", "reader@example.com"),
        ("fp_sig", keys.sign_identity("s3cret", "reader@example.com")),
    ]
    assert keys.check_identity_signature("s3cret", "reader@example.com", dict(parse_qsl(parts.query))["fp_sig"])
