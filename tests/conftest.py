"""Test-wide fixtures: a real Kafka broker per session (tests/kafka_fixture.py)
and real ``healer run`` worker processes (tests/workers.py)."""

pytest_plugins = ["tests.kafka_fixture", "tests.workers"]
