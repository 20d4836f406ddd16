"""Users' own stream processors, run by the streams workers next to the router.

A processor is a module with ``install(ctx: streams.app.StreamsContext) -> None`` that declares
Faust agents, tables and web pages on ``ctx.app``. Start workers with it:

    cpevents worker streams --processor streams.processors.counts --processor my_pkg.fraud

``ctx.events(types=["deploy.*"])`` is a topic of decoded Events of those types (undecodable
records are dead-lettered to ``events.dlt`` naming the agent); ``ctx.output(name, schema=...)``
is the processor's own topic, whose ``send`` returns once Kafka acknowledged the record.
``streams.testing.ProcessorTest`` runs a processor without Kafka.

Each agent joins the workers' consumer group, so Kafka spreads its partitions across the workers
like the router's. An agent that subscribes to the event topics shares the router's consumer: a
slow processor slows routing (offsets are committed once every agent is done with a record), so
keep agents fast, and size tables with ``partitions=ctx.settings.partitions`` and key them by
tenant, the topics' key, so a tenant's table entry lives with its partition.

Examples: ``counts`` (per-tenant counts), ``failure_streak`` (alerts on repeated health checks
failing, a derived Avro topic), ``lead_time`` (deploy lead time percentiles, a web page).
"""
