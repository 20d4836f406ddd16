"""The HTTP gateway: event ingest, webhook CRUD and delivery queries over Kafka.

Pure parts (problems, auth, request validation, webhook operations, the OpenAPI document) are
separate from the aiohttp handlers (``server``) and the Kafka I/O (``stores``).
"""
