"""The public names of proxypool: a sorted ``__all__`` that lists exactly what the package exports
(in the style of httpx's tests/test_exported_members.py), and the names DESIGN.md promises."""

from __future__ import annotations
import __future__

import inspect
import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

import proxypool
from proxypool import api, errors, models

# Names that must stay importable from the top level (DESIGN.md: client, models, errors, Geo).
PROMISED = {
    "ProxyPoolAdapter",
    "wrap_session",
    "NoProxyAvailable",
    "PoolBypassRefused",
    "ProviderClient",
    "LocationCatalog",
    "ProxyPool",
    "ProxySource",
    "ExtractionSource",
    "GatewaySource",
    "StaticIPSource",
    "ListSource",
    "Account",
    "DailyUsage",
    "Product",
    "ProductPage",
    "ProductType",
    "Proxy",
    "Geo",
    "ProxyPoolError",
    "ConfigError",
    "InvalidGeo",
    "ApiError",
    "InvalidAppKey",
    "RealNameRequired",
    "ApiResponseError",
    "ApiConnectionError",
    "PoolExhausted",
    "__version__",
}


def test_all_is_sorted_and_exactly_the_exports() -> None:
    included_private_members = ["__version__"]
    exported = sorted(
        name
        for name, value in vars(proxypool).items()
        if (not name.startswith("_") or name in included_private_members)
        # Submodules and `from __future__ import annotations` are not exports.
        and not isinstance(value, types.ModuleType | __future__._Feature)
    )
    assert proxypool.__all__ == sorted(proxypool.__all__)
    assert proxypool.__all__ == exported
    assert len(set(proxypool.__all__)) == len(proxypool.__all__)


def test_promised_names_are_exported() -> None:
    assert set(proxypool.__all__) >= PROMISED


@pytest.mark.parametrize("module", [api, errors, models], ids=lambda m: m.__name__)
def test_module_all_is_sorted_and_defined(module: types.ModuleType) -> None:
    names = module.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(module, name), name
        assert getattr(proxypool, name) is getattr(module, name)


def test_exported_members_belong_to_proxypool() -> None:
    for name in proxypool.__all__:
        if name == "__version__":
            continue
        member = getattr(proxypool, name)
        assert member.__module__.startswith("proxypool."), name
        assert inspect.getdoc(member), f"{name} has no docstring"


def test_version_is_a_string() -> None:
    assert isinstance(proxypool.__version__, str)
    assert proxypool.__version__.count(".") >= 2


def test_error_tree_has_one_root() -> None:
    tree = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, proxypool.ProxyPoolError) for cls in tree)
    assert issubclass(proxypool.ConfigError, ValueError)
    assert issubclass(proxypool.InvalidGeo, proxypool.ConfigError)
    for cls in (proxypool.InvalidAppKey, proxypool.RealNameRequired):
        assert issubclass(cls, proxypool.ApiError)
    for cls in (proxypool.ApiError, proxypool.ApiResponseError, proxypool.ApiConnectionError):
        assert issubclass(cls, proxypool.ProviderError)
    assert not issubclass(proxypool.PoolExhausted, proxypool.ProviderError)


def test_api_error_carries_code_message_and_status() -> None:
    exc = proxypool.InvalidAppKey("session has expired", code=3, http_status=401)
    assert (exc.code, exc.message, exc.http_status) == (3, "session has expired", 401)
    assert "code 3" in str(exc) and "HTTP 401" in str(exc)
    assert repr(exc).startswith("InvalidAppKey(code=3, http_status=401")


def test_package_has_a_null_handler_only() -> None:
    handlers = logging.getLogger("proxypool").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
    assert all(isinstance(h, logging.NullHandler) for h in handlers)


def test_import_configures_no_logging_and_no_scrapy() -> None:
    # A fresh interpreter: importing proxypool adds no root handler, sets no level, and does not
    # import Scrapy (an optional extra).
    code = (
        "import logging, sys, proxypool\n"
        "root = logging.getLogger()\n"
        "assert root.handlers == [], root.handlers\n"
        "assert root.level == logging.WARNING, root.level\n"
        "for name in ('urllib3', 'urllib3.connectionpool', 'proxypool', 'proxypool.api'):\n"
        "    assert logging.getLogger(name).level == logging.NOTSET, name\n"
        "assert logging.getLogger('urllib3.connectionpool').filters, 'no redaction filter'\n"
        "assert not any(m == 'scrapy' or m.startswith('scrapy.') for m in sys.modules)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(proxypool.__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
