"""The contract: Avro schemas, the event-type and topic catalogs, models and their serde."""
