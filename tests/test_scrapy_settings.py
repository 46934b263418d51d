"""Tests of the Scrapy side's configuration: ``read_settings`` (pure) and ``ProxyPoolAddon``."""

from __future__ import annotations

from typing import Any

import pytest
from scrapy import Spider
from scrapy.settings import Settings
from scrapy.utils.conf import build_component_list
from scrapy.utils.test import get_crawler

from proxypool.errors import ConfigError
from proxypool.geo import Geo
from scrapy_ext import ProxyPoolAddon, ProxyPoolMiddleware
from scrapy_ext.addon import MIDDLEWARE_PRIORITY
from scrapy_ext.settings import DEFAULTS, ProxyPoolSettings, read_settings

KEY = "KEYs3cr3tXYZ1234567890"
URL = "http://127.0.0.1:9/openapi"
NO_ENV: dict[str, str] = {}


def read(env: dict[str, str] | None = None, **values: Any) -> ProxyPoolSettings:
    """read_settings over a real Scrapy Settings object holding ``values`` at project priority."""
    settings = Settings({"PROXYPOOL_APP_KEY": KEY, "PROXYPOOL_API_URL": URL, **values})
    return read_settings(settings, NO_ENV if env is None else env)


# -- defaults and coercion ---------------------------------------------------------------------


def test_defaults_match_the_documented_table() -> None:
    config = read()
    assert config.enabled is True
    assert (config.life, config.batch, config.min_size) == (10, 20, 5)
    assert config.strategy == "round_robin"
    assert config.ban_statuses == frozenset({403, 429})
    assert config.max_proxy_retries == 3
    assert config.slot_per_proxy is False
    assert config.geo == Geo()
    assert config.check_proxies is True
    assert all(name.startswith("PROXYPOOL_") for name in DEFAULTS)  # one namespace
    assert (
        read_settings(
            Settings(DEFAULTS | {"PROXYPOOL_APP_KEY": KEY, "PROXYPOOL_API_URL": URL}), NO_ENV
        )
        == config
    )  # the table is what an empty project gets


def test_command_line_strings_are_coerced() -> None:
    """``scrapy crawl -s NAME=value`` delivers text: each setting is parsed once, here."""
    config = read(
        PROXYPOOL_LIFE="30",
        PROXYPOOL_BATCH=" 50 ",
        PROXYPOOL_MIN_SIZE="0",
        PROXYPOOL_BAN_STATUSES="403, 429,503",
        PROXYPOOL_MAX_PROXY_RETRIES="5",
        PROXYPOOL_SLOT_PER_PROXY="true",
        PROXYPOOL_CHECK_PROXIES="off",
        PROXYPOOL_WAIT_TIMEOUT="2.5",
        PROXYPOOL_GEO="us/California",
        PROXYPOOL_STRATEGY="random",
    )
    assert (config.life, config.batch, config.min_size) == (30, 50, 0)
    assert config.ban_statuses == frozenset({403, 429, 503})
    assert config.max_proxy_retries == 5
    assert config.slot_per_proxy is True
    assert config.check_proxies is False
    assert config.wait_timeout == 2.5
    assert config.geo == Geo("US", "California")
    assert config.strategy == "random"


@pytest.mark.parametrize(
    "geo",
    ["US/California", {"country": "us", "state": "California"}, Geo("US", "California")],
)
def test_geo_accepts_string_dict_and_geo(geo: Any) -> None:
    assert read(PROXYPOOL_GEO=geo).geo == Geo("US", "California")


def test_proxy_auth_encoding_is_scrapys_setting() -> None:
    assert read().auth_encoding == "latin-1"  # Scrapy's default
    assert read(HTTPPROXY_AUTH_ENCODING="utf-8").auth_encoding == "utf-8"


def test_trusted_handlers_from_settings_py_or_the_command_line() -> None:
    assert read().trusted_handlers == ()
    assert read(PROXYPOOL_TRUSTED_HANDLERS=" a.B , c.D,").trusted_handlers == ("a.B", "c.D")
    assert read(PROXYPOOL_TRUSTED_HANDLERS=[dict]).trusted_handlers == (dict,)


def test_typed_values_from_settings_py_pass_through() -> None:
    config = read(PROXYPOOL_BAN_STATUSES=[403], PROXYPOOL_MAX_EXTRACTED=1000, PROXYPOOL_LIFE=5)
    assert config.ban_statuses == frozenset({403})
    assert config.max_extracted == 1000
    assert config.life == 5


# -- bad values: ConfigError naming the setting and what is allowed ----------------------------


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("PROXYPOOL_LIFE", "ten", "whole number"),
        ("PROXYPOOL_LIFE", 0, "between 1 and"),
        # The provider's cap, the same as the client's and the pool's (10080 passed here once,
        # then closed the spider with an error about `life`, not the setting).
        ("PROXYPOOL_LIFE", 8000, "between 1 and 7200 minutes, got 8000"),
        ("PROXYPOOL_BATCH", 501, "between 1 and 500"),
        ("PROXYPOOL_MIN_SIZE", -1, "at least 0"),
        ("PROXYPOOL_MAX_PROXY_RETRIES", 2.5, "whole number"),
        ("PROXYPOOL_BAN_STATUSES", "403,abc", "100-599"),
        ("PROXYPOOL_BAN_STATUSES", [99], "100-599"),
        ("PROXYPOOL_SLOT_PER_PROXY", "maybe", "True or False"),
        ("PROXYPOOL_ENABLED", "perhaps", "True or False"),
        ("PROXYPOOL_WAIT_TIMEOUT", "0", "> 0"),
        ("PROXYPOOL_WAIT_TIMEOUT", "nan", "finite"),
        ("PROXYPOOL_CHECK_TIMEOUT", -1, "> 0"),
        ("PROXYPOOL_STRATEGY", "fastest", "'round_robin'"),
        ("PROXYPOOL_GEO", "USA/California", "alpha-2"),
        ("PROXYPOOL_GEO", {"country": "US", "town": "x"}, "allowed are"),
        ("PROXYPOOL_BAN_POLICY", "not a path", "import path"),
        ("PROXYPOOL_SOURCE", "nodots", "import path"),
        ("PROXYPOOL_MAX_EXTRACTED", 0, "at least 1"),
        ("PROXYPOOL_BAN_STORM_BATCHES", -1, "between 0 and"),
        ("PROXYPOOL_BAN_STORM_BATCHES", "three", "whole number"),
        ("PROXYPOOL_BAN_STORM_COOLDOWN", 0, "> 0"),
        ("PROXYPOOL_BAN_STORM_COOLDOWN", "inf", "finite"),
        ("PROXYPOOL_BAN_STORM_CLOSE", "sometimes", "True or False"),
        ("PROXYPOOL_API_TIMEOUT", "soon", "seconds"),
        ("HTTPPROXY_AUTH_ENCODING", "klingon-8", "text encoding"),
        ("HTTPPROXY_AUTH_ENCODING", "rot13", "text encoding"),  # a codec, but str to str
        ("PROXYPOOL_TRUSTED_HANDLERS", "aiohttp", "import paths"),
        ("PROXYPOOL_TRUSTED_HANDLERS", {"http": "a.B"}, "list of import paths"),
        ("PROXYPOOL_TRUSTED_HANDLERS", [3], "import paths or classes"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: Any, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(**{name: value})
    assert caught.value.field == name
    assert name in str(caught.value)
    assert allowed in str(caught.value)
    assert KEY not in str(caught.value)


def test_expiry_margin_must_be_shorter_than_life() -> None:
    with pytest.raises(ConfigError, match=r"PROXYPOOL_EXPIRY_MARGIN .* PROXYPOOL_LIFE") as caught:
        read(PROXYPOOL_LIFE=1, PROXYPOOL_EXPIRY_MARGIN=60)
    assert caught.value.field == "PROXYPOOL_EXPIRY_MARGIN"
    assert read(PROXYPOOL_LIFE=1, PROXYPOOL_EXPIRY_MARGIN=59).expiry_margin == 59.0


# -- app key and API URL -----------------------------------------------------------------------


def test_key_and_url_fall_back_to_the_environment() -> None:
    env = {"PROXYPOOL_APP_KEY": KEY, "PROXYPOOL_API_URL": URL}
    config = read_settings(Settings(), env)
    assert config.app_key == KEY
    assert config.api_url == URL


def test_settings_win_over_the_environment() -> None:
    env = {"PROXYPOOL_APP_KEY": "fromenv", "PROXYPOOL_API_URL": "http://env.invalid/x"}
    assert read(env).app_key == KEY
    assert read(env).api_url == URL


@pytest.mark.parametrize("missing", ["PROXYPOOL_APP_KEY", "PROXYPOOL_API_URL"])
def test_missing_key_or_url_says_which_setting_and_variable(missing: str) -> None:
    values = {"PROXYPOOL_APP_KEY": KEY, "PROXYPOOL_API_URL": URL}
    del values[missing]
    with pytest.raises(ConfigError) as caught:
        read_settings(Settings(values), NO_ENV)
    assert caught.value.field == missing
    assert f"setting {missing}" in str(caught.value)
    assert f"environment variable {missing}" in str(caught.value)
    assert KEY not in str(caught.value)


def test_a_custom_source_needs_no_key_or_url() -> None:
    config = read_settings(Settings({"PROXYPOOL_SOURCE": "myproject.sources.Static"}), NO_ENV)
    assert config.source == "myproject.sources.Static"
    assert config.app_key is None


def test_app_key_is_not_in_the_repr() -> None:
    config = read()
    assert KEY not in repr(config)
    assert "app_key" not in repr(config)


def test_disabled_reads_nothing_else() -> None:
    """A switched-off middleware must not fail on the rest (no key, broken values)."""
    config = read_settings(
        Settings({"PROXYPOOL_ENABLED": "False", "PROXYPOOL_LIFE": "never"}), NO_ENV
    )
    assert config.enabled is False


# -- the add-on --------------------------------------------------------------------------------


def _middleware_order(settings: Settings) -> list[str]:
    return [
        path if isinstance(path, str) else f"{path.__module__}.{path.__qualname__}"
        for path in build_component_list(
            settings.get_component_priority_dict_with_base("DOWNLOADER_MIDDLEWARES")
        )
    ]


def test_addon_installs_the_middleware_at_560() -> None:
    settings = Settings()
    ProxyPoolAddon().update_settings(settings)
    assert settings.getdict("DOWNLOADER_MIDDLEWARES") == {ProxyPoolMiddleware: MIDDLEWARE_PRIORITY}
    assert MIDDLEWARE_PRIORITY == 560


def test_addon_places_it_between_retry_and_compression_below_httpproxy() -> None:
    crawler = get_crawler(
        Spider,
        {
            "ADDONS": {"scrapy_ext.ProxyPoolAddon": 0},
            "PROXYPOOL_APP_KEY": KEY,
            "PROXYPOOL_API_URL": URL,
        },
    )
    order = _middleware_order(crawler.settings)
    mine = order.index("scrapy_ext.middleware.ProxyPoolMiddleware")
    assert order.index("scrapy.downloadermiddlewares.retry.RetryMiddleware") < mine
    assert mine < order.index(
        "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware"
    )
    assert mine < order.index("scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware")


def test_addon_keeps_a_priority_the_project_chose() -> None:
    settings = Settings({"DOWNLOADER_MIDDLEWARES": {"scrapy_ext.ProxyPoolMiddleware": None}})
    ProxyPoolAddon().update_settings(settings)
    assert settings.getdict("DOWNLOADER_MIDDLEWARES") == {"scrapy_ext.ProxyPoolMiddleware": None}


def test_ban_storm_settings() -> None:
    config = read()
    assert (config.ban_storm_batches, config.ban_storm_cooldown) == (3, 600.0)
    assert config.ban_storm_close is False
    config = read(
        PROXYPOOL_BAN_STORM_BATCHES="5",
        PROXYPOOL_BAN_STORM_COOLDOWN="90",
        PROXYPOOL_BAN_STORM_CLOSE="true",
    )
    assert (config.ban_storm_batches, config.ban_storm_cooldown) == (5, 90.0)
    assert config.ban_storm_close is True
    assert read(PROXYPOOL_BAN_STORM_BATCHES=0).ban_storm_batches is None  # detection off
