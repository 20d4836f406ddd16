"""A Confluent-compatible schema registry stored in a compacted Kafka topic.

Pure bookkeeping (``canonical``, ``compatibility``, ``mode``, ``records``, ``state``, ``params``,
``errors``, ``auth``: users and permissions of the auth file) is separate from I/O (``store``:
the Kafka topic and the writer election; ``http``: content types, errors and forwarding;
``access``: HTTP Basic authentication and permission checks; ``app``: the aiohttp API;
``server``: running it, loopback-only without an auth file). Embed it with
:func:`registry.server.start_registry` or :class:`registry.server.RegistryThread`.
"""
