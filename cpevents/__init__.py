"""The top layer: the ``cpevents`` CLI and the local-stack tooling (a broker from Maven jars,
testcontainers, ``dev up``, ``demo``). The only code that imports the components and wires them
together; nothing below it imports it (import-linter contracts in ``pyproject.toml``)."""
