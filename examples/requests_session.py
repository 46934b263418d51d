"""Crawl a few pages of a site with ``requests``, every request through a rotating pool of proxies.

Try it against the embedded simulator (no account needed)::

    proxypool demo --serve                  # shell 1: prints three export lines; paste them in
    python examples/requests_session.py     # shell 2: crawls $PROXYPOOL_DEMO_TARGET

Against your own account: set ``PROXYPOOL_APP_KEY`` and ``PROXYPOOL_API_URL`` and pass a start
URL. The script fetches the start URL, then the pages it links to on the same site, breadth
first, up to ``--limit`` pages; each line shows the status and the URL. Proxies come from the
provider for ``--geo`` (default ``US``); a banned or dead proxy is replaced and the request
retried on another one; a request is never sent from this machine's own IP.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import requests

from proxypool import ProviderClient, ProxyPool, ProxyPoolError, wrap_session

TARGET_ENV = "PROXYPOOL_DEMO_TARGET"


class LinkParser(HTMLParser):
    """Collects the ``href`` of every ``<a>`` tag."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)


def same_site_links(base_url: str, html: str) -> list[str]:
    parser = LinkParser()
    parser.feed(html)
    host = urlsplit(base_url).netloc
    links = (urldefrag(urljoin(base_url, href))[0] for href in parser.links)
    return [link for link in links if urlsplit(link).netloc == host]


def crawl(session: requests.Session, start: str, limit: int) -> tuple[int, int]:
    """Fetch ``start`` and the same-site pages it leads to, up to ``limit`` pages.
    Returns (pages fetched, requests failed)."""
    queue, seen = deque([start]), {start}
    ok = failed = 0
    while queue and ok + failed < limit:
        url = queue.popleft()
        try:
            response = session.get(url, timeout=15)
        except (ProxyPoolError, requests.RequestException) as exc:
            # ProxyBanned, ProxyRequestFailed, NoProxyAvailable...: the request was NOT sent
            # directly; say why (proxies are shown as host:port, never with credentials).
            failed += 1
            print(f"ERR {url}  {type(exc).__name__}: {exc}")
            continue
        print(f"{response.status_code} {url}")
        if response.ok:
            ok += 1
        else:
            failed += 1
        if "html" in response.headers.get("Content-Type", ""):
            for link in same_site_links(url, response.text):
                if link not in seen:
                    seen.add(link)
                    queue.append(link)
    return ok, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "start",
        nargs="?",
        default=os.environ.get(TARGET_ENV),
        help=f"URL to start from (default: ${TARGET_ENV}, set by `proxypool demo --serve`)",
    )
    parser.add_argument("--geo", default="US", help="where the IPs should be (default: US)")
    parser.add_argument("--limit", type=int, default=10, help="pages to fetch (default: 10)")
    args = parser.parse_args(argv)
    if not args.start:
        parser.error(f"give a start URL or set {TARGET_ENV}")

    # The app_key comes from $PROXYPOOL_APP_KEY and the API's URL from $PROXYPOOL_API_URL.
    with ProviderClient() as client:
        # life: minutes each IP is kept; batch: IPs bought per extraction; min_size: refill
        # before fewer than this many are left.
        pool = ProxyPool(client, geo=args.geo, life=10, batch=5, min_size=2)
        try:
            with wrap_session(requests.Session(), pool) as session:
                ok, failed = crawl(session, args.start, args.limit)
        finally:
            stats = pool.stats()
            pool.close()
    print(
        f"fetched {ok} pages, {failed} failed; pool: {stats['served']} proxies handed out, "
        f"{stats['extracted']} IPs bought in {stats['refills']} refills, "
        f"{stats['bans']} bans, {stats['failures']} proxy failures"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ProxyPoolError as exc:  # bad key, unknown geography, ...: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
