"""Test-wide fixtures: a real Kafka broker per session (tests/kafka_fixture.py)
real ``healer run`` worker processes (tests/workers.py) and a real
kube-apiserver per session, started on first use (tests/kube_fixture.py)."""

pytest_plugins = ["tests.kafka_fixture", "tests.workers", "tests.kube_fixture"]
