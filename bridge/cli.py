"""`ponte serve | worker | run | redis`: the one place that sets up logging and maps errors to
exit codes (ConfigError: 11)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from loguru import logger

from bridge import __version__, cli_config, cli_jobs, cli_status, embedded_redis, log
from bridge.config import Settings, load_settings
from bridge.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SUPERVISORD_CONF = PROJECT_ROOT / "supervisord.conf"


def _serve(settings: Settings) -> int:
    import uvicorn

    from bridge.store.connection import wait_until_ready
    from bridge.web.app import create_app

    wait_until_ready(settings.redis_connection_url())
    config = uvicorn.Config(
        create_app(settings), host=settings.server_host, port=settings.server_port,
        log_config=None, access_log=False, lifespan="on",
        timeout_graceful_shutdown=max(5, settings.baileys_stop_wait_ms // 1000 + 5))
    uvicorn.Server(config).run()
    return 0


def _worker(settings: Settings) -> int:
    from rq import SimpleWorker
    from rq.worker_pool import WorkerPool

    from bridge.jobs import runtime
    from bridge.jobs.queues import ALL_QUEUES
    from bridge.jobs.worker import PoolWorker
    from bridge.store.connection import sync_client, wait_until_ready

    url = settings.redis_connection_url()
    wait_until_ready(url)
    runtime.install(runtime.WorkerContext(settings=settings, redis=sync_client(url)))
    connection = sync_client(url)
    # RQ lists a queue in `rq info` only once a job was enqueued; an operator looking at a
    # fresh install should still see where the work will go.
    from bridge.jobs.queues import chatwoot_queue
    queue = chatwoot_queue(connection)
    connection.sadd(queue.redis_queues_keys, queue.key)
    level = settings.chatwoot_queue_worker_log_level.upper()
    logger.bind(workers=settings.chatwoot_queue_concurrency, queues=",".join(ALL_QUEUES)).info(
        "Ponte worker is up")
    # SimpleWorker runs jobs in the worker process itself: no fork per job, and the HTTP
    # connection pool to Chatwoot is reused. The pool gives parallelism and respawns workers.
    if settings.chatwoot_queue_concurrency == 1:
        SimpleWorker(list(ALL_QUEUES), connection=connection).work(
            with_scheduler=True, logging_level=level)
    else:
        WorkerPool(list(ALL_QUEUES), connection=connection,
                   num_workers=settings.chatwoot_queue_concurrency,
                   worker_class=PoolWorker).start(logging_level=level)
    return 0


def _redis(settings: Settings) -> int:
    socket = settings.embedded_redis_socket
    embedded_redis.prepare(socket)
    argv = embedded_redis.server_argv(socket)
    os.execv(argv[0], argv)


def _run(settings: Settings) -> int:
    """Everything under supervisord, in the foreground, with the repository's config."""
    settings.check_required()
    data_dir = settings.server_data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    bin_dir = Path(sys.executable).parent
    supervisord = bin_dir / "supervisord"
    if not supervisord.exists():
        raise ConfigError(f"{supervisord} is missing: run `make run` (it installs everything)")
    env = dict(os.environ)
    env.update(PONTE_DATA_DIR=str(data_dir), PONTE_BIN=str(bin_dir),
               PONTE_EMBEDDED_REDIS="true" if settings.embedded_redis else "false",
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    if settings.embedded_redis:
        embedded_redis.server_binary()  # fail here, with a clear message, not in a child
        env["REDIS_URL"] = settings.redis_connection_url()
    logger.bind(embedded_redis=settings.embedded_redis, port=settings.server_port).info(
        "Starting Ponte under supervisord")
    os.execve(supervisord, [str(supervisord), "-n", "-c", str(SUPERVISORD_CONF)], env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ponte", description="WhatsApp <-> Chatwoot bridge")
    parser.add_argument("--version", action="version", version=f"ponte {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="webhook, status endpoints and the WhatsApp sidecars")
    sub.add_parser("worker", help="RQ workers that post to Chatwoot")
    sub.add_parser("run", help="everything under supervisord (embedded Redis if REDIS_URL unset)")
    sub.add_parser("redis", help="the embedded redis-server (used by supervisord.conf)")
    cli_status.add_parser(sub)
    cli_jobs.add_parser(sub)
    cli_config.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        log.setup(settings.server_log_level, settings.server_log_format)
        if args.command == "redis":
            return _redis(settings)
        if args.command == "status":  # a client of serve: needs no Chatwoot settings
            return cli_status.run(args, settings)
        if args.command == "jobs":  # needs Redis only
            return cli_jobs.run(args, settings)
        if args.command == "config":
            return cli_config.run(args, settings)
        settings.check_required()
        if settings.webhook_authorized_agent_names:
            logger.warning("WEBHOOK_AUTHORIZED_AGENT_NAMES is ignored: anyone can change a "
                           "display name. Use WEBHOOK_AUTHORIZED_AGENT_EMAILS or _IDS.")
        if args.command == "serve":
            return _serve(settings)
        if args.command == "worker":
            log.setup(settings.chatwoot_queue_worker_log_level, settings.server_log_format)
            return _worker(settings)
        return _run(settings)
    except ConfigError as err:
        print(f"ponte: {err}", file=sys.stderr)
        return ConfigError.exit_code


if __name__ == "__main__":
    sys.exit(main())
