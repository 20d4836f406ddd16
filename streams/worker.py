"""Assembling and running one streams worker process: webhook configs, the router, processors."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from plumbing.kafka.topic_admin import ensure_topics, with_replication
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.serde import Serde
from streams.app import StreamsContext, WorkerOptions, create_app, events_topic, load_processor
from streams.router_agent import RouterAgent, install_router
from streams.webhook_config import WebhookConfig

log = logging.getLogger(__name__)


@dataclass
class StreamsWorker:
    """A configured, not yet running, streams worker."""

    ctx: StreamsContext
    router: RouterAgent


def build_worker(
    settings: Settings, options: WorkerOptions, serde: Serde | None = None
) -> StreamsWorker:
    """The Faust app with the router and ``options.processors`` installed (nothing started).

    Replication ``auto`` is resolved here, against the cluster, so that Faust's own topics
    (changelogs, the assignor's) are replicated as ours are."""
    settings = with_replication(settings)
    serde = serde or serde_for(settings)
    app = create_app(settings, options)
    ctx = StreamsContext(
        settings=settings,
        options=options,
        serde=serde,
        webhooks=WebhookConfig(settings, serde.webhooks),
        app=app,
        events_topic=events_topic(app, settings),
    )
    router = install_router(ctx)
    for path in options.processors:
        load_processor(path)(ctx)
    return StreamsWorker(ctx, router)


def run_worker(
    settings: Settings, options: WorkerOptions, loglevel: str = "info", serde: Serde | None = None
) -> None:
    """Run a worker until it is stopped (SIGINT/SIGTERM). Blocks."""
    settings = with_replication(settings)  # once: build_worker then finds it resolved
    ensure_topics(settings)
    worker = build_worker(settings, options, serde)
    # Rebuild the whole webhook table before the first event is routed: routing with a
    # partial table would silently drop tasks for webhooks not yet read.
    worker.ctx.webhooks.start()
    log.info("webhook configs loaded: %d active webhooks", len(worker.ctx.webhooks.index))
    try:
        faust.Worker(worker.ctx.app, loglevel=loglevel).execute_from_commandline()
    finally:
        worker.router.close()
        worker.ctx.webhooks.stop()
