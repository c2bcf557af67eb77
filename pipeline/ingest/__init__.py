"""``computewatch ingest``: telemetry in the shapes inference stacks already send.

- :mod:`~pipeline.ingest.spans`: a GenAI span to an allocation event (pure);
- :mod:`~pipeline.ingest.mapping`: the TOML mapping of the fields OpenTelemetry does not name;
- :mod:`~pipeline.ingest.otlp`: OTLP/HTTP bodies (protobuf, JSON, gzip) to spans, and answers;
- :mod:`~pipeline.ingest.batch`: one export request to events and dead letters (pure);
- :mod:`~pipeline.ingest.sink`: the batch to Kafka, acknowledged;
- :mod:`~pipeline.ingest.receiver`: the aiohttp app serving ``POST /v1/traces``.

All but :mod:`~pipeline.ingest.spans` and :mod:`~pipeline.ingest.mapping` need the ``otlp``
extra (``pip install 'computewatch[otlp]'``).
"""
