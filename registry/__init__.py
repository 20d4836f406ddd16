"""A Confluent-compatible schema registry stored in a compacted Kafka topic.

Pure bookkeeping (``canonical``, ``compatibility``, ``records``, ``state``, ``params``,
``errors``) is separate from I/O (``store``: the Kafka topic and the writer election;
``app``: the aiohttp API; ``server``: running it). Embed it with
:func:`registry.server.start_registry` or :class:`registry.server.RegistryThread`.
"""
