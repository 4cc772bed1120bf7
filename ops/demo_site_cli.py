"""``jobq demo-site``: serve the local demo site (``ops/local_site.py``) in the foreground.

Compose's ``demo`` profile runs it as a service so the demo producer's ``fetch_url`` jobs have a
real HTTP server on the compose network (``http://demo-site:8000/page/7``). There it must listen
on 0.0.0.0 (a container's 127.0.0.1 is private to it); the default stays 127.0.0.1.

Example::

    $ jobq demo-site --port 8000
    $ jobq demo-site --host 0.0.0.0 --port 8000     # inside a container
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click

# The server class and handler are the ones serve_local_site() uses, so the pages are the same;
# only the address differs (serve_local_site binds 127.0.0.1 on purpose, for tests).
from ops.local_site import _Handler, _Server


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def demo_site_command(host: str, port: int) -> None:
    """Serve /page/N, /delay/MS, /bytes/N and /status/CODE until TERM or Ctrl-C."""
    try:
        server = _Server((host, port), _Handler)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None

    def stop(signum: int, frame: FrameType | None) -> None:
        # docker stop sends TERM; leave serve_forever() and exit 0 instead of dying by signal.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"demo site on http://{bound_host}:{bound_port}/", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
