"""canonical_url: what is normalized, what is kept, and that it is stable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from aggregator.urls import canonical_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("https://example.com", "https://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com/a#section-2", "https://example.com/a"),
        (
            "https://example.com/a?utm_source=rss&utm_medium=feed&UTM_Campaign=x&id=7",
            "https://example.com/a?id=7",
        ),
        ("https://example.com/a?fbclid=1&gclid=2&msclkid=3&mc_cid=4&mc_eid=5", "https://example.com/a"),
        ("https://example.com/?p=123", "https://example.com/?p=123"),
        ("https://example.com/story.php?storyid=9&ref_src=twsrc", "https://example.com/story.php?storyid=9"),
        ("https://example.com/a?b=2&a=1&b=1", "https://example.com/a?b=2&a=1&b=1"),  # order kept
        ("https://example.com/a?q=a%20b&x=%2F", "https://example.com/a?q=a%20b&x=%2F"),  # encoding kept
        ("https://Bücher.Example/x", "https://bücher.example/x"),
        ("https://XN--BCHER-KVA.example/", "https://xn--bcher-kva.example/"),
        ("http://[2001:DB8::1]:80/", "http://[2001:db8::1]/"),
        ("https://user@Example.com/", "https://user@example.com/"),
        ("  https://example.com/a  ", "https://example.com/a"),
    ],
)
def test_canonical_form(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/file",
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "/relative/path",
        "example.com/no-scheme",
        "http://",
        "http://exa mple.com/",
        "https://example.com:99999/",
        "https://example.com:port/",
        "http://[::1/",
        "https://example.com/\x00",
        "https://exa\nmple.com/",
    ],
)
def test_not_an_http_url_is_none(url: str) -> None:
    assert canonical_url(url) is None


@settings(max_examples=400)
@given(st.one_of(urls(), st.text(max_size=80), st.from_regex(r"https?://[^/]{0,15}/[^#]{0,20}(#.{0,5})?")))
def test_idempotent_and_never_raises(url: str) -> None:
    once = canonical_url(url)
    if once is not None:
        assert canonical_url(once) == once
