"""Canonical form of article URLs, so that the same article reached by different links compares equal.

In: a URL string as a feed gave it (already absolute).  Out: the same URL with the
differences that never change which page is served taken out, or ``None`` when it is
not an http(s) URL at all.

What changes and why:

- scheme and host are case-insensitive, so they are lower-cased (an IDNA host is left
  in the form it was given, only lower-cased: converting between ``xn--`` and Unicode
  would make two spellings of one host *less* likely to match, not more);
- ``:80`` on http and ``:443`` on https are the defaults and are dropped;
- the fragment never reaches the server, so it is dropped;
- an empty path is ``/``;
- only *known* tracking parameters are removed (``utm_*``, ``fbclid``, ``gclid`` …).
  Everything else in the query is kept, byte for byte and in order, because many
  sites identify the article there (``?p=123``, ``storyid=``).

The function is idempotent: ``canonical_url(canonical_url(u)) == canonical_url(u)``.

``without_password`` is the other way a URL is shown: a feed URL may carry credentials
(``https://user:password@host/feed``), and wherever one is printed or logged its password
reads ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = [
    "TRACKING_PARAMETERS",
    "canonical_url",
    "query_holds_secret",
    "without_password",
    "without_userinfo",
]

# Parameters that only say how a reader arrived (campaign, ad click, newsletter),
# never which article is served.  Compared case-insensitively.
TRACKING_PARAMETERS = frozenset(
    {
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "gclsrc",
        "dclid",  # Google Display
        "gbraid",  # Google Ads (iOS)
        "wbraid",
        "msclkid",  # Microsoft Ads
        "mc_cid",  # Mailchimp
        "mc_eid",
        "igshid",  # Instagram
        "yclid",  # Yandex
        "_hsenc",  # HubSpot
        "_hsmi",
        "mkt_tok",  # Marketo
        "ref_src",  # Twitter embeds
        "ref_url",
        "twclid",  # Twitter Ads
        "ttclid",  # TikTok
        "li_fat_id",  # LinkedIn
        "_ga",  # Google Analytics cross-domain linker
        "_gl",
        "oly_anon_id",  # Omeda
        "oly_enc_id",
        "vero_id",  # Vero
        "vero_conv",
        "rb_clickid",
        "wickedid",
        "__s",  # Drip
    }
)
# Whole families of tracking parameters.
TRACKING_PREFIXES = ("utm_", "hsa_", "pk_", "mtm_")  # Google/UTM, HubSpot ads, Piwik/Matomo

# Characters that may appear in a host name as browsers accept it: letters (including
# non-ASCII ones of IDNA hosts), digits, hyphen, dot, underscore (seen in real hosts).
_HOST_RE = re.compile(r"^[^\s/?#@:\[\]\\%<>\"'`{}|^]+$")
_IPV6_RE = re.compile(r"^[0-9a-f:.]+$")
# Control characters and whitespace other than the plain space: a URL holding them is
# garbage, and urlsplit would silently drop some of them, which breaks idempotence.
_BAD_CHARS_RE = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str | None:
    """Return the canonical form of an http(s) URL, or ``None`` for anything else.

    Never raises: a URL that cannot be understood is ``None``.
    """
    url = url.strip().replace(" ", "%20")
    if not url or _BAD_CHARS_RE.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port, an unbalanced IPv6 bracket
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    netloc = _canonical_netloc(parts.netloc, scheme, port)
    if netloc is None:
        return None
    path = parts.path or "/"
    query = _strip_tracking(parts.query)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _canonical_netloc(netloc: str, scheme: str, port: int | None) -> str | None:
    userinfo, _, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        host, _, _rest = hostport[1:].partition("]")
        host = host.lower()
        if not host or not _IPV6_RE.match(host):
            return None
        host = f"[{host}]"
    else:
        host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
        host = host.lower()
        if not host or not _HOST_RE.match(host) or host.strip(".") == "":
            return None
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{userinfo}@{host}" if userinfo else host


def _strip_tracking(query: str) -> str:
    if not query:
        return ""
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue  # "a=1&&b=2": empty pairs carry nothing
        name = pair.split("=", 1)[0].lower()
        if name in TRACKING_PARAMETERS or name.startswith(TRACKING_PREFIXES):
            continue
        kept.append(pair)
    return "&".join(kept)


def without_userinfo(url: str) -> str:
    """``url`` without its user name and password (as it is when it has none): for a link
    that is published, or resolved against, where the credentials of a private feed's URL
    must not go."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# Query parameters that look like a credential (a private or paid feed's access key): a URL
# holding one is not published, nor taken as the base of the links published.
_SECRET_PARAMETER = re.compile(
    r"token|key|secret|pass|auth|sig|session|sid|credential|private", re.IGNORECASE
)


def query_holds_secret(query: str) -> bool:
    """Whether a URL's query has a parameter named like a credential (``?token=…``,
    ``api_key=``).  Ordinary queries do not: WordPress feeds are ``/?feed=rss2``."""
    names = (unquote_plus(p.partition("=")[0]) for p in re.split("[&;]", query) if p)
    return any(_SECRET_PARAMETER.search(name) for name in names)


# From "//" to the last "@" before the authority ends (a "/" or whitespace): a password may
# hold "'", "#" or "?" (valid or mistyped), and must be masked all the same.
_USERINFO = re.compile(r"(?<!/)//([^/\s]*)@")


def without_password(text: str) -> str:
    """``text`` with the password of every URL in it masked (``user:***@``); a lone user name,
    which is then the whole credential (a token), is masked too (``***@``)."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_mask_userinfo, text)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match[1].partition(":")
    return f"//{user}:***@" if colon else "//***@"
