"""HTTP routers, one per endpoint family."""
