"""Users' own stream processors, run by the streams workers next to the router.

A processor is a module with ``install(ctx: streams.app.StreamsContext) -> None`` that declares
Faust agents, tables and web pages on ``ctx.app``. Start workers with it:

    cpevents worker streams --processor streams.processors.counts --processor my_pkg.fraud

Each agent joins the workers' consumer group, so Kafka spreads its partitions across the workers
like the router's. ``ctx.events_topic`` is the five subsystem topics as raw bytes (decode with
``ctx.serde.events.decode(message.value, message.topic)``; skip ``DecodeError``, the router
dead-letters those records). An agent that subscribes to the event topics shares the router's
consumer: a slow processor slows routing, so keep agents fast, and size tables with
``partitions=ctx.settings.partitions`` so they are co-partitioned with the event topics.
"""
