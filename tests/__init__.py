"""healer test suite (a package so tests.kafka_fixture and tests.harness import by name)."""
