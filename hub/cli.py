"""The `gridhub` command: demo data, the server, migrations and the schema."""

from __future__ import annotations

import asyncio
import copy
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from hub.commands.audit import audit
from hub.commands.identity import apikey, token
from hub.commands.options import DB_OPTION
from hub.commands.options import settings_for as _settings
from hub.commands.policy import policy
from hub.commands.sync import sync_group
from hub.config import Settings


class WithoutQueryStrings(logging.Filter):
    """Cuts the query string off the request targets uvicorn logs.

    GET /graphql?query=...&variables=... carries the whole operation, ID numbers included; the
    access log keeps method, path and status. Installed on the loggers that write request
    targets: uvicorn.access (one line per request) and uvicorn.error ("WebSocket /path" lines).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, tuple):
            return True
        if record.name == "uvicorn.access" and len(record.args) == 5:
            target = 2  # (client, method, path with query, HTTP version, status)
        elif isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'):
            target = 1  # (client, path with query[, status])
        else:
            return True
        args = list(record.args)
        args[target] = str(args[target]).partition("?")[0]
        record.args = tuple(args)
        return True


def _uvicorn_log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["without_query_strings"] = {
        "()": f"{__name__}.{WithoutQueryStrings.__qualname__}"
    }
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = config["loggers"].setdefault(name, {})
        logger.setdefault("filters", []).append("without_query_strings")
    return config


@click.group()
@click.version_option(package_name="gridhub")
def main() -> None:
    """GridHub: the information-sharing hub for community grid governance."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@main.command()
@DB_OPTION
@click.option("--residents", default=2000, show_default=True, help="How many residents to create.")
@click.option(
    "--seed", default=7, show_default=True, help="Random seed: the same seed, the same data."
)
@click.option(
    "--reset", is_flag=True, help="Delete every row first (a database with data is refused)."
)
@click.option(
    "--anchor",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The day the data is 'as of' (default today, UTC): the same seed and anchor reproduce "
    "the same rows on any day.",
)
def demo(
    database_url: str | None, residents: int, seed: int, reset: bool, anchor: datetime | None
) -> None:
    """Create or migrate the database and load deterministic demo data."""
    from hub.demo.loader import load_demo
    from hub.errors import GridHubError
    from hub.migrate import upgrade

    settings = _settings(database_url)
    asyncio.run(upgrade(settings.database_url))
    try:
        summary = asyncio.run(
            load_demo(
                settings.database_url,
                residents=residents,
                seed=seed,
                reset=reset,
                anchor=anchor.date() if anchor else None,
            )
        )
    except GridHubError as error:
        raise click.ClickException(f"{error.message} [{error.code}]") from None
    click.echo(summary)


@main.command()
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
@click.option(
    "--broker",
    "broker_url",
    envvar="GRIDHUB_BROKER_URL",
    default=None,
    help="memory, postgres or redis://...: how workers share event changes.",
)
@click.option(
    "--run-connectors",
    is_flag=True,
    help="Run the connectors' schedules (connectors/*.toml) in the server too; without it, "
    "run `gridhub sync worker` beside it.",
)
def serve(
    database_url: str | None,
    host: str,
    port: int,
    workers: int,
    broker_url: str | None,
    run_connectors: bool,
) -> None:
    """Serve the GraphQL API (and GraphiQL) with uvicorn."""
    import os

    import uvicorn

    from hub.db import safe_url

    settings = Settings.from_env(database_url=database_url, broker_url=broker_url)
    if workers > 1 and settings.effective_broker == "memory":
        raise click.UsageError(
            "several workers need a shared broker: use PostgreSQL (--db postgresql://...) "
            "or --broker redis://..."
        )
    # Workers are separate processes: they rebuild Settings from the environment.
    os.environ["GRIDHUB_DATABASE_URL"] = settings.database_url
    if settings.broker_url:
        os.environ["GRIDHUB_BROKER_URL"] = settings.broker_url
    if run_connectors:
        os.environ["GRIDHUB_RUN_CONNECTORS"] = "1"
    click.echo(
        f"GridHub on http://{host}:{port}/ (pages) and http://{host}:{port}/graphql "
        f"({safe_url(settings.database_url)})"
    )
    uvicorn.run(
        "hub.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="auto",
        http="auto",
        log_level="info",
        log_config=_uvicorn_log_config(),
        proxy_headers=False,
        # The WebSocket frame limit is the HTTP body limit: a subscription message is no
        # bigger than a POST (uvicorn's default is 16 MiB).
        ws_max_size=settings.limits.max_body_bytes,
    )


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@DB_OPTION
@click.option("--revision", default="head", show_default=True)
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Apply Alembic migrations up to REVISION."""
    from hub.migrate import current_revision, upgrade

    settings = _settings(database_url)
    asyncio.run(upgrade(settings.database_url, revision))
    click.echo(f"database at revision {asyncio.run(current_revision(settings.database_url))}")


@main.group()
def schema() -> None:
    """The GraphQL schema."""


@schema.command("print")
@click.option(
    "--role",
    default=None,
    help="Print this role's schema under the policy files (default: the full schema, "
    "every role's schema is cut from).",
)
def schema_print(role: str | None) -> None:
    """Print the SDL of the API, or of one role."""
    sys.stdout.write(_sdl(role))


@schema.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="schema")
def schema_export(directory: Path) -> None:
    """Write the full SDL and every role's SDL (DIRECTORY/roles/ROLE.graphql)."""
    from hub.api.registry import SchemaRegistry
    from hub.api.schema import build_schema

    registry = SchemaRegistry(build_schema(), Settings.from_env())
    roles = directory / "roles"
    roles.mkdir(parents=True, exist_ok=True)
    (directory / "gridhub.graphql").write_text(_sdl(None), encoding="utf-8")
    for stale in roles.glob("*.graphql"):
        stale.unlink()
    for role in registry.roles:
        (roles / f"{role.replace(':', '-')}.graphql").write_text(
            _sdl(role, registry), encoding="utf-8"
        )
    click.echo(f"wrote {directory}/gridhub.graphql and {len(registry.roles)} role schemas")


def _sdl(role: str | None, registry: Any = None) -> str:
    from hub.api.registry import SchemaRegistry
    from hub.api.schema import build_schema

    if role is None:
        return build_schema().as_str() + "\n"
    registry = registry or SchemaRegistry(build_schema(), Settings.from_env())
    if role not in registry.roles:
        raise click.BadParameter(f"no role {role!r} in the policy", param_hint="--role")
    return registry.schema_for(role).as_str() + "\n"


main.add_command(token)
main.add_command(apikey)
main.add_command(audit)
main.add_command(policy)
main.add_command(sync_group)


if __name__ == "__main__":
    main()
