"""Helpers shared by the command modules."""

from __future__ import annotations

from rich.console import Console

from plumbing.settings import Settings

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """Settings from the environment, with a readable error instead of a traceback."""
    try:
        return Settings()
    except Exception as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise SystemExit(2) from None
