"""Shared fixtures: the real local Kafka broker and the embedded ClickHouse engine.

Workers started by tests (in this process or as children, which inherit the environment) keep
their Faust data directory in the session's temporary directory, not in the working tree.
"""

from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.clickhouse", "tests.fixtures.webhook"]


@pytest.fixture(scope="session", autouse=True)
def worker_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPUTEWATCH_WORKER_DATA_DIR", str(tmp_path_factory.mktemp("worker")))
        yield
