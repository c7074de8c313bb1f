"""On the line: the model server, prediction records and streams, for every task through ``core`` only.

- ``inputs``: what a request or message carries (file bytes, JSON rows, a JSON array) -> what the task's
  ``predict`` takes, by the kind of input the task declares (``Task.input_kind``); no per-task code.
- ``records``: the prediction record store (SQLAlchemy 2, Alembic migrations; SQLite WAL by default,
  PostgreSQL), idempotent on a message key, exportable to CSV/Parquet.
- ``server``: the FastAPI app behind ``shopfloor serve``: predict, models, records, health, Prometheus metrics.
- ``mqtt``: ``shopfloor stream --mqtt``: at-least-once MQTT worker (QoS 1, ack after the record is committed,
  shared subscriptions for scale-out).
- ``opcua``: ``shopfloor stream --opcua``: polls OPC UA nodes on a fixed period, maps them to the task's columns,
  records each sample once (keyed on source timestamps), writes results back to nodes and/or MQTT.
- ``delivery``: what both streams do with a prediction: record rows, commit with back-off, publish over MQTT.

May import ``shopfloor.core``; never an application package (tasks are reached through the registry).
"""
