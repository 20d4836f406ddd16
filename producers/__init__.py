"""Everything that writes events and webhook configs into Kafka."""
