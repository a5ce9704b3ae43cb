"""``aggregator serve``: run the web side (feeds, front page, archive, subscriptions, editor) with uvicorn.

In: the CLI's context (the feeds.yaml path), a host and a port.  Out: a running server
until Ctrl-C; exit 2 for a bad config, an unusable database or a bad environment.

Registered in ``cli.py`` with one line::

    app.command("serve")(cli_serve.serve)

uvicorn's access log is off: unsubscribe, confirmation and private-feed URLs carry
tokens, and a log is the usual way such tokens leak.  ``--access-log`` turns it on.

When ``output.base_url`` has a path (``https://example.org/news/``), the site answers as
mounted there (ASGI ``root_path``, ``web.ServeUnder``) behind a proxy that strips the path.

The site follows feeds.yaml while it runs (newsletters, titles, folders; see
``web.SettingsFile``), as edits in /admin/ take effect at once; the signing key, the
database and the mail settings are those read at start.

Without ``smtp:`` the confirmation and unsubscribe-link mails go to newsletters/outbox/:
a warning says so at start, and another names each file written (not its address).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from aggregator.errors import AggregatorError, StoreError
from aggregator.store import Store

if TYPE_CHECKING:
    from aggregator import mail

EXIT_USAGE = 2
log = logging.getLogger(__name__)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.", min=0, max=65535)] = 8000,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request (URLs with tokens included).")
    ] = False,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            help="Proxies whose X-Forwarded-For/-Proto to trust (comma-separated IPs);"
            " 127.0.0.1 unless given, as a proxy on the same machine; '' trusts none.",
        ),
    ] = None,
) -> None:
    """Serve the feeds, the front page, the digest archive and the subscription pages."""
    # Imported here: uvicorn, Starlette, Jinja2 and the mail stack are the web side's alone;
    # every other command (`aggregator poll` from cron above all) would pay for them at start-up.
    import uvicorn  # noqa: PLC0415 -- the web side's server, for this command only

    from aggregator import newsletters, web, web_admin  # noqa: PLC0415 -- Starlette, Jinja2, mail

    loaded = ctx.obj.load()
    try:
        settings = web.settings_from_config(loaded)
    # AggregatorError: a signing key that is too short or cannot be read or created.
    except (ValueError, OSError, AggregatorError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    try:
        store = Store.open(loaded.database_url)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc

    def transport() -> mail.Transport:
        return newsletters.default_transport(loaded)

    try:
        probe = transport()  # a missing SMTP password is a startup error, not a failed form later
    except AggregatorError as exc:
        store.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    probe.close()
    if probe.outbox is not None:
        # The pages still say "check your inbox": the operator is the one who must act.
        log.warning(
            "no smtp: in %s: confirmation and unsubscribe mails are written to %s, not sent",
            loaded.path.name,
            probe.outbox,
        )
    # The editor below rewrites feeds.yaml: the site reads it again when it changes.
    app = web.create_app(settings, store, transport, config_path=loaded.path)
    # The feeds.yaml editor under /admin/ (off, with a 503, until $AGGREGATOR_ADMIN_TOKEN is set).
    app.router.routes.append(web_admin.admin_routes(loaded.path, public_url=settings.base_url))
    root = web.root_path_of(settings.base_url)
    # Under a path (https://example.org/news/), a proxy forwards /news/x as /x or as it is.
    under = f"; requests arrive with or without {root}" if root else ""
    typer.echo(
        f"serving {settings.public_dir} and {settings.archive_dir} on http://{host}:{port}/ "
        f"(public URL {settings.base_url}{under})",
        err=True,
    )
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            access_log=access_log,
            server_header=False,
            # Trusted by default from a proxy on this machine (uvicorn's own default): without
            # it every visitor behind nginx is 127.0.0.1, and one visitor's wrong tokens or
            # sign-ups would use up the limits of all of them.
            proxy_headers=True,
            forwarded_allow_ips="127.0.0.1" if forwarded_allow_ips is None else forwarded_allow_ips,
            log_level="info",
        )
    finally:
        store.close()
