"""Test-wide fixtures: a real Kafka broker per session (tests/kafka_fixture.py)
real ``healer run`` worker processes (tests/workers.py) and a real
kube-apiserver per session, started on first use (tests/kube_fixture.py).
Under ``CI`` every skip is a failure (tests/ci_skips.py); ``pytester`` lets unit
tests run a small pytest session to check that."""

pytest_plugins = ["tests.kafka_fixture", "tests.workers", "tests.kube_fixture", "tests.ci_skips", "pytester"]
