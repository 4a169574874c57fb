"""Safe target templating: ``{{ labels.X }}``, ``{{ annotations.X }}``, ``{{ value }}``.

Templates are parsed once at policy load into literal and reference parts; a
render substitutes values and never evaluates them, so event data containing
``{{ ... }}`` is inert text. Rendered names are validated for their field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_REF = re.compile(r"^(?:(labels|annotations)\.([a-zA-Z_][a-zA-Z0-9_]*)|(value))$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_TRITON_MODEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")

FieldKind = Literal["namespace", "name", "node", "model", "version", "url", "context"]


class TemplateError(ValueError):
    """A template that uses anything but the three allowed references."""


class InvalidValue(Exception):
    """A substituted value that would change the structure of the field (``invalid_target``)."""

    def __init__(self, ref: str, why: str) -> None:
        super().__init__(f"{ref}: {why}")
        self.ref = ref
        self.why = why


# Characters that delimit URL parts: a label substituted into a URL template
# must not be able to move the host, add credentials or a path.
_URL_DELIMS = re.compile(r"[/?#@\\:%\s\[\]]")


class Unresolved(Exception):
    """A referenced label/annotation is absent or empty (``target_unresolved``)."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


@dataclass(frozen=True)
class Ref:
    source: Literal["labels", "annotations", "value"]
    key: str

    def __str__(self) -> str:
        return "value" if self.source == "value" else f"{self.source}.{self.key}"


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Ref, ...]
    source: str

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | Ref] = []
        pos = 0
        for m in _TEMPLATE.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            ref = _REF.fullmatch(m.group(1))
            if not ref:
                raise TemplateError(
                    f"template {text!r}: {{{{ {m.group(1)} }}}} is not allowed; "
                    "use {{ labels.NAME }}, {{ annotations.NAME }} or {{ value }} only"
                )
            if ref.group(3):
                parts.append(Ref("value", ""))
            else:
                parts.append(Ref(ref.group(1), ref.group(2)))  # type: ignore[arg-type]
            pos = m.end()
        rest = text[pos:]
        if (
            "{{" in rest
            or "}}" in rest
            or any(isinstance(p, str) and ("{{" in p or "}}" in p) for p in parts)
        ):
            raise TemplateError(f"template {text!r} has an unbalanced '{{{{' or '}}}}'")
        if rest:
            parts.append(rest)
        return cls(tuple(parts), text)

    @property
    def refs(self) -> tuple[Ref, ...]:
        return tuple(p for p in self.parts if isinstance(p, Ref))

    def render(
        self,
        labels: dict[str, str],
        annotations: dict[str, str],
        value: float | None,
        *,
        field: FieldKind | None = None,
    ) -> str:
        """Substitute references (never evaluating their values).

        With ``field="url"`` a value substituted next to literal text may not
        contain URL delimiters (``/?#@:%``, whitespace, brackets), so
        ``http://{{ labels.service }}.svc:8000`` cannot be pointed at another
        host by a label; a template that is one reference alone takes a whole
        URL. Raises :class:`Unresolved` or :class:`InvalidValue`.
        """
        whole = field == "url" and len(self.parts) == 1
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            if p.source == "value":
                if value is None:
                    raise Unresolved("value")
                out.append(f"{value:g}")
                continue
            got = (labels if p.source == "labels" else annotations).get(p.key, "")
            if got == "":
                raise Unresolved(str(p))
            if field == "url" and not whole and _URL_DELIMS.search(got):
                raise InvalidValue(str(p), "contains a URL delimiter")
            out.append(got)
        return "".join(out)


def valid_for(field: FieldKind, value: str) -> str | None:
    """Why ``value`` is not valid for ``field`` (None when valid)."""
    if field == "namespace":
        if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
            return "not a DNS-1123 label (lowercase alphanumerics and '-', at most 63)"
    elif field in ("name", "node"):
        if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
            return "not a DNS-1123 subdomain (lowercase alphanumerics, '-', '.', at most 253)"
    elif field == "model":
        if not _TRITON_MODEL.fullmatch(value) or ".." in value:
            return "not a Triton model name (letters, digits, '_', '-', '.', no '..')"
    elif field == "version":
        if not re.fullmatch(r"[0-9]{1,18}", value):
            return "not a model version number"
    elif field == "url":
        if not value.isascii() or not value.isprintable() or any(c in value for c in " {}"):
            return "URL contains whitespace, braces or non-ASCII characters"
        try:
            u = urlsplit(value)
            u.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return "not a URL"
        if u.scheme not in ("http", "https", "grpc") or not u.hostname or u.username or u.password:
            return "not an http(s)/grpc URL with a host and no credentials"
        if not re.fullmatch(r"[a-z0-9.\-]+|[0-9a-f:.]+", u.hostname):
            return "URL host is not a DNS name or IP address"
    elif field == "context" and (
        len(value) > 253 or not re.fullmatch(r"[A-Za-z0-9_.@:\-/]+", value)
    ):
        return "not a kubeconfig context name"
    return None
