"""An embedded provider simulator, local forward proxies and a target site (demo and tests)."""
