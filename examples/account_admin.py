"""Look after a provider account from Python: proxy accounts, traffic used, packages, static IPs.

Try it against the embedded simulator (no account needed)::

    proxypool demo --serve                                # shell 1; paste its export lines
    python examples/account_admin.py                      # shell 2: read-only tour
    python examples/account_admin.py --try-changes        # also add, change and delete an account

With your own ``PROXYPOOL_APP_KEY`` and ``PROXYPOOL_API_URL`` the read-only tour is safe; with
``--try-changes`` it adds a temporary proxy account, changes it and deletes it again (the real API
takes about 5 minutes to apply changes). Passwords are never printed.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from datetime import datetime, timedelta

from proxypool import Account, ProductType, ProviderClient, ProxyPoolError

KB_PER_GB = 1024 * 1024


def gigabytes(kb: int) -> str:
    return f"{kb / KB_PER_GB:.2f} GB"


def kind(value: object) -> str:
    return value.name.lower() if isinstance(value, ProductType) else str(value)


def describe(account: Account) -> str:
    state = "enabled" if account.enabled else "disabled"
    limit = f"{account.limit_flow} GB" if account.limit_flow else "unlimited"
    return (
        f"{account.username:<16} {state:<9} {kind(account.product_type):<28} "
        f"used {gigabytes(account.usage_flow):>10}  limit {limit:<10} {account.remark!r}"
    )


def tour(client: ProviderClient) -> None:
    """Read-only: accounts, last week's traffic, packages, static IPs."""
    accounts = client.list_accounts()
    print(f"Proxy accounts ({len(accounts)}):")
    for account in accounts:
        print("  " + describe(account))

    end = datetime.now().replace(microsecond=0)
    usage = client.daily_usage(start=end - timedelta(days=7), end=end)
    total = sum(day.flow for day in usage)
    print(f"Traffic, last 7 days: {gigabytes(total)} over {len(usage)} days")
    for day in usage:
        print(f"  {day.day.isoformat()}  {gigabytes(day.flow):>10}")

    # iter_products walks every page (one request per page, made as the loop goes on).
    products = list(client.iter_products(size=20))
    print(f"Packages: {len(products)}")
    for product in products[:5]:
        expires = product.expired_at.date().isoformat() if product.expired_at else "never"
        print(f"  {product.trade_no:<28} {kind(product.product_type):<28} expires {expires}")
    if len(products) > 5:
        print(f"  ... and {len(products) - 5} more")

    static = client.list_static_ips(size=5)
    total_static = static.total_count if static.total_count is not None else len(static.items)
    print(f"Static IPs: {total_static}")
    for ip in static.items:
        print(f"  {ip.ip}:{ip.port}  {ip.country_code}  {kind(ip.product_type)}")


def try_changes(client: ProviderClient) -> None:
    """Add a temporary account, change each of its settings, then delete it."""
    username = "example" + secrets.token_hex(4)
    # Alphanumeric only, as the provider requires; kept in memory, never printed.
    password = secrets.token_hex(12)
    client.add_accounts({username: password}, remark="proxypool example")
    print(f"Added account {username}")
    client.change_remark(username, "changed by account_admin.py")
    client.change_limit(username, 5)
    client.change_password(username, secrets.token_hex(12))
    client.disable_accounts(username)
    print("Changed its remark, limit (5 GB) and password; disabled it")
    mine = [a for a in client.list_accounts() if a.username == username]
    for account in mine:
        print("  now: " + describe(account))
    client.enable_accounts(username)
    client.delete_accounts(username)
    left = any(a.username == username for a in client.list_accounts())
    print(f"Enabled and deleted {username}" + (" (deletion still pending)" if left else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--try-changes",
        action="store_true",
        help="also add a temporary proxy account, change it and delete it",
    )
    args = parser.parse_args(argv)
    # The app_key comes from $PROXYPOOL_APP_KEY and the API's URL from $PROXYPOOL_API_URL.
    with ProviderClient() as client:
        tour(client)
        if args.try_changes:
            try_changes(client)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ProxyPoolError as exc:  # bad key, network trouble...: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
