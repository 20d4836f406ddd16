"""Shared plumbing that every component may import: settings, Kafka client factories, topic admin,
the local broker launcher and the ``cpevents`` CLI. Domain logic does not belong here."""
