"""aiohttp, imported without the two TLS contexts it builds at import time.

``aiohttp.connector`` makes its default client contexts (verified and unverified) when it
is imported, and each loads the system's CA bundle: about 20-35 ms apiece on this
project's machines, a tenth of ``aggregator poll``'s start-up, for contexts the fetcher
never uses (``AiohttpTransport`` hands aiohttp httpx's own context for every https
request; http requests need none).  OpenSSL reads ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``
when a context loads its default paths, so while aiohttp is imported both point at
nothing: the contexts are made with an empty trust store, which fails closed (a request
that ever reached them would be refused as unverifiable, not let through).  The variables
are put back as they were before anything else runs; httpx reads them later, when it
makes its context.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_TRUST_STORE_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@contextlib.contextmanager
def _empty_default_trust_store() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in _TRUST_STORE_VARIABLES}
    for name in _TRUST_STORE_VARIABLES:
        os.environ[name] = os.devnull
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


with _empty_default_trust_store():
    import aiohttp
    import aiohttp.http_exceptions

__all__ = ["aiohttp"]
