"""Shared plumbing every component builds on: settings, Kafka client configuration, the one
produce path, topic admin, compacted-topic views and the dead-letter convention."""
