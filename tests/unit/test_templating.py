"""Safe target templates: only three reference forms, substitution never
evaluates event data, rendered names validated per field; hostile label
values (``{{ }}``, ``../``, 10 KB, unicode, URL delimiters) stay inert."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healer.templating import (
    InvalidValue,
    Ref,
    Template,
    TemplateError,
    Unresolved,
    valid_for,
)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("{{ labels.deployment }}", (Ref("labels", "deployment"),)),
        ("{{labels.deployment}}", (Ref("labels", "deployment"),)),
        ("{{ annotations.runbook }}", (Ref("annotations", "runbook"),)),
        ("{{ value }}", (Ref("value", ""),)),
        ("vllm", ("vllm",)),
        ("", ()),
        (
            "{{ labels.app }}-{{ labels.track }}",
            (Ref("labels", "app"), "-", Ref("labels", "track")),
        ),
        (
            "http://{{ labels.service }}.svc:8000",
            ("http://", Ref("labels", "service"), ".svc:8000"),
        ),
        ("{{ labels.Hostname }}", (Ref("labels", "Hostname"),)),
    ],
)
def test_parse(text: str, parts: tuple[object, ...]) -> None:
    assert Template.parse(text).parts == parts


@pytest.mark.parametrize(
    "text",
    [
        "{{ labels.x | upper }}",
        "{{ labels }}",
        "{{ labels.x.y }}",
        "{{ env.HOME }}",
        "{{ labels['x'] }}",
        "{{ 1 + 1 }}",
        "{{ value * 2 }}",
        "{{ }}",
        "{{ labels.x }",
        "{ labels.x }}",
        "{{",
        "}}",
        "a {{ labels.x }} }}",
        "{{ labels.1x }}",
        "{{ lookup('env', 'HOME') }}",
        "{{ labels.x }}{{",
    ],
)
def test_parse_rejects_everything_else(text: str) -> None:
    with pytest.raises(TemplateError):
        Template.parse(text)


def test_render() -> None:
    t = Template.parse("{{ labels.app }}-{{ annotations.track }}-{{ value }}")
    assert t.render({"app": "vllm"}, {"track": "canary"}, 2.5) == "vllm-canary-2.5"
    assert Template.parse("{{ value }}").render({}, {}, 5000000.0) == "5e+06"
    assert Template.parse("{{ value }}").render({}, {}, 3.0) == "3"


@pytest.mark.parametrize(
    ("labels", "value", "ref"),
    [({}, 1.0, "labels.app"), ({"app": ""}, 1.0, "labels.app"), ({"app": "x"}, None, "value")],
)
def test_unresolved(labels: dict[str, str], value: float | None, ref: str) -> None:
    t = Template.parse("{{ labels.app }}{{ value }}")
    with pytest.raises(Unresolved) as exc:
        t.render(labels, {}, value)
    assert exc.value.ref == ref


def test_event_data_is_never_a_template() -> None:
    t = Template.parse("{{ labels.app }}")
    evil = "{{ labels.secret }}{{ annotations.x }}{% for %}"
    assert t.render({"app": evil, "secret": "s3cr3t"}, {"x": "y"}, None) == evil


# ---------------------------------------------------------------- URL parts


@pytest.mark.parametrize(
    "service",
    ["evil.example.net/x#", "a@evil", "evil:9999", "a b", "a?x=", "a%2f", "a\\b", "[::1]", "a\n"],
)
def test_url_part_cannot_move_the_host(service: str) -> None:
    t = Template.parse("http://{{ labels.service }}.ns.svc:8000")
    with pytest.raises(InvalidValue):
        t.render({"service": service}, {}, None, field="url")
    assert t.render({"service": service}, {}, None) is not None  # only the url field is strict


def test_url_from_one_whole_label_is_allowed() -> None:
    t = Template.parse("{{ annotations.triton_url }}")
    assert (
        t.render({}, {"triton_url": "http://triton:8000/x"}, None, field="url")
        == "http://triton:8000/x"
    )


@given(st.text(max_size=200))
def test_url_template_host_is_always_inside_the_suffix(service: str) -> None:
    t = Template.parse("http://{{ labels.service }}.llm.svc:8000")
    try:
        url = t.render({"service": service}, {}, None, field="url")
    except (InvalidValue, Unresolved):
        return
    if valid_for("url", url) is None:
        host = urlsplit(url).hostname or ""
        assert host.endswith(".llm.svc") and urlsplit(url).port == 8000


# ---------------------------------------------------------------- valid_for


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("namespace", "llm-prod", True),
        ("namespace", "a" * 63, True),
        ("namespace", "a" * 64, False),
        ("namespace", "LLM", False),
        ("namespace", "a.b", False),
        ("namespace", "-a", False),
        ("namespace", "", False),
        ("name", "vllm-0.shard-1", True),
        ("name", "a" * 253, True),
        ("name", "a" * 254, False),
        ("name", "../etc", False),
        ("name", "a/b", False),
        ("name", "vllm_0", False),
        ("name", "vllm-ü", False),
        ("name", "{{ labels.x }}", False),
        ("name", "vllm\n", False),
        ("model", "llama3_8b", True),
        ("model", "Llama-3.1-8B", True),
        ("model", "../llama", False),
        ("model", "a/b", False),
        ("model", "a..b", False),
        ("version", "3", True),
        ("version", "v3", False),
        ("version", "-1", False),
        ("url", "http://triton.llm.svc:8000", True),
        ("url", "https://triton", True),
        ("url", "grpc://triton:8001", True),
        ("url", "file:///etc/passwd", False),
        ("url", "http://user:pw@triton", False),
        ("url", "http://", False),
        ("url", "http://tri ton", False),
        ("url", "http://{{x}}", False),
        ("url", "http://[::1]:8000", True),
        ("url", "http://triton:99999", False),
        ("url", "http://trïton", False),
        ("url", "http://triton\n", False),
        ("version", "\u0663", False),
        ("namespace", "llm\n", False),
        ("model", "llama\n", False),
        ("context", "kind-healer", True),
        ("context", "arn:aws:eks:eu-west-1:123:cluster/gpu", True),
        ("context", "a b", False),
    ],
)
def test_valid_for(field: str, value: str, ok: bool) -> None:
    assert (valid_for(field, value) is None) is ok  # type: ignore[arg-type]


HOSTILE = st.one_of(
    st.text(max_size=64),
    st.sampled_from(
        [
            "{{ labels.x }}",
            "{{",
            "}}",
            "../../etc/passwd",
            "kube-system",
            "..",
            ".",
            "a" * 10_240,
            "ünïcødé",
            "\u202e",
            "\x00",
            "a\nb",
            "-",
            "A",
        ]
    ),
    st.builds(lambda a, b: a + "{{ " + b + " }}", st.text(max_size=10), st.text(max_size=10)),
)


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_hostile_values_render_verbatim_and_are_validated(value: str) -> None:
    t = Template.parse("{{ labels.deployment }}")
    try:
        out = t.render({"deployment": value}, {}, None)
    except Unresolved:
        assert value == ""
        return
    assert out == value  # substituted as text, never evaluated
    if valid_for("name", out) is None:
        assert "{" not in out and "/" not in out and out.isascii() and len(out) <= 253
