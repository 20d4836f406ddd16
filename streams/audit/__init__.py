"""Replay and audit: read topics over a time range, in timestamp order, and redeliver history.

Pure parts (option rules, time ranges, filters, the bounded merge, rendering) are separate from
the one Kafka reader (``reader.RangeReader``) and the redelivery producer, so they are tested
without a broker.
"""

from streams.audit.filters import RecordFilter, expand_type_patterns
from streams.audit.merge import BoundedMerge
from streams.audit.options import OutputFormat, ReplayOptionError, ReplayOptions, ReplayPlan
from streams.audit.pipeline import DeadLetterEntry, ReplayStats
from streams.audit.reader import PartitionSpan, RangeReader, RawRecord, ReplayError
from streams.audit.run import AuditTopic, ReplayRequest, count_matches, entries
from streams.audit.timerange import TimeRange, parse_range

__all__ = [
    "AuditTopic",
    "BoundedMerge",
    "DeadLetterEntry",
    "OutputFormat",
    "PartitionSpan",
    "RangeReader",
    "RawRecord",
    "RecordFilter",
    "ReplayError",
    "ReplayOptionError",
    "ReplayOptions",
    "ReplayPlan",
    "ReplayRequest",
    "ReplayStats",
    "TimeRange",
    "count_matches",
    "entries",
    "expand_type_patterns",
    "parse_range",
]
