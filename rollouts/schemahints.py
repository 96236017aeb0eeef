"""Making a member's schema refusal something a person can act on (issue 30, item 7): which object, which field,
which line of the YAML, and the field the schema knows that was probably meant.

A member's server-side apply says `failed to create typed patch object (ns/web; apps/v1, Kind=Deployment):
.spec.replica: field not declared in schema`. `field_error` reads the field path out of that (and out of a strict
decoder's `unknown field "spec.replica"`); `suggestion` asks the same member for its OpenAPI v3 document of that
group and version (what it really serves, custom resources included), walks the object's schema to the parent of
the unknown field and offers the closest known one; `line_of` finds the key in the pasted YAML. Everything here
reads what a member said, so it is bounded: the path is at most 32 segments of 253 characters, the document is
read within the dry run's deadline and the response cap, and a schema that does not have the expected shape
gives no suggestion rather than an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

import yaml

from foundation import untrusted

_TYPED_PATCH = re.compile(r"typed patch object \([^)]*\): (\.[^:\s]{1,2048}): (.{1,300})$")
_UNKNOWN = re.compile(r'unknown field "([^"\s]{1,2048})"')
_SEGMENT = re.compile(r'([^.\[\]]+)|\[([^\]]{1,300})\]')
MAX_SEGMENTS = 32


@dataclasses.dataclass(frozen=True)
class FieldError:
    path: tuple[str | int | tuple[str, str], ...]  # "spec", 0 (an index), ("name", "web") (a keyed list item)
    reason: str
    unknown: bool  # the field is not in the schema (else: a wrong value)

    @property
    def dotted(self) -> str:
        out = ""
        for seg in self.path:
            if isinstance(seg, str):
                out += ("." if out else "") + seg
            elif isinstance(seg, int):
                out += f"[{seg}]"
            else:
                out += f"[{seg[0]}={seg[1]}]"
        return out


def _segments(path: str) -> tuple | None:
    out: list = []
    for match in _SEGMENT.finditer(path.lstrip(".")):
        name, bracket = match.groups()
        if name is not None:
            out.append(name[:253])
        elif bracket.isdigit():
            out.append(int(bracket))
        elif "=" in bracket:
            key, value = bracket.split("=", 1)
            out.append((key.strip()[:63], value.strip().strip('"')[:253]))
        else:
            return None
        if len(out) > MAX_SEGMENTS:
            return None
    return tuple(out) or None


def field_error(message: str) -> FieldError | None:
    """The field a member's refusal names, or None when it names none."""
    if match := _TYPED_PATCH.search(message):
        path = _segments(match.group(1))
        reason = match.group(2)
        if path:
            return FieldError(path, reason, unknown="not declared in schema" in reason)
    if match := _UNKNOWN.search(message):
        path = _segments(match.group(1))
        if path:
            return FieldError(path, "unknown field", unknown=True)
    return None


def openapi_path(api_version: str) -> str:
    """`/openapi/v3/api/v1` for the core group, `/openapi/v3/apis/GROUP/VERSION` for the others."""
    return "/openapi/v3/api/v1" if "/" not in api_version else f"/openapi/v3/apis/{api_version}"


def _resolve(schema, schemas: dict, depth: int = 0):
    """Follow `$ref` and a single `allOf` (how Kubernetes writes a reference with a description)."""
    for _ in range(8):
        if not isinstance(schema, dict):
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            schema = schemas.get(ref.removeprefix("#/components/schemas/"))
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            schema = all_of[0]
            continue
        return schema
    return None


def _kind_schema(document: dict, api_version: str, kind: str):
    schemas = (document.get("components") or {}).get("schemas") if isinstance(document, dict) else None
    if not isinstance(schemas, dict):
        return None, {}
    group, _, version = api_version.rpartition("/")
    for schema in schemas.values():
        gvks = schema.get("x-kubernetes-group-version-kind") if isinstance(schema, dict) else None
        if isinstance(gvks, list) and any(isinstance(g, dict) and g.get("group", "") == group and
                                          g.get("version") == version and g.get("kind") == kind for g in gvks):
            return schema, schemas
    return None, schemas


def known_fields(document: dict, obj: dict, path: tuple) -> list[str]:
    """The fields the schema declares beside the last segment of `path` (where the unknown one sits)."""
    schema, schemas = _kind_schema(document, str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    for seg in path[:-1]:
        schema = _resolve(schema, schemas)
        if schema is None:
            return []
        if isinstance(seg, str):
            schema = (schema.get("properties") or {}).get(seg)
        else:
            schema = schema.get("items")
    schema = _resolve(schema, schemas)
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return sorted(k for k in properties if isinstance(k, str)) if isinstance(properties, dict) else []


def suggestion(document: dict, obj: dict, error: FieldError) -> str:
    """"did you mean 'replicas'?" when a declared field is close to the unknown one, else ""."""
    if not error.unknown or not isinstance(error.path[-1], str):
        return ""
    close = difflib.get_close_matches(error.path[-1], known_fields(document, obj, error.path), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def line_of(text: str, kind: str, name: str, path: tuple) -> int | None:
    """The 1-based line of `path`'s last key in the YAML document holding `kind` `name` (the deepest key that
    exists when it does not), or None."""
    try:
        documents = list(yaml.compose_all(text, Loader=untrusted.NoAliasLoader))  # noqa: S506 - no aliases
    except (yaml.YAMLError, RecursionError):
        return None
    for node in documents:
        if not isinstance(node, yaml.MappingNode) or _scalar(node, "kind") != kind or \
                _scalar(_child(node, "metadata"), "name") != name:
            continue
        line, current = None, node
        for seg in path:
            if isinstance(seg, str) and isinstance(current, yaml.MappingNode):
                pair = next(((k, v) for k, v in current.value if getattr(k, "value", None) == seg), None)
                if pair is None:
                    break
                line, current = pair[0].start_mark.line + 1, pair[1]
            elif isinstance(seg, int) and isinstance(current, yaml.SequenceNode) and seg < len(current.value):
                current = current.value[seg]
                line = current.start_mark.line + 1
            elif isinstance(seg, tuple) and isinstance(current, yaml.SequenceNode):
                item = next((i for i in current.value if _scalar(i, seg[0]) == seg[1]), None)
                if item is None:
                    break
                current, line = item, item.start_mark.line + 1
            else:
                break
        return line
    return None


def _child(node, key: str):
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if getattr(k, "value", None) == key:
                return v
    return None


def _scalar(node, key: str) -> str | None:
    child = _child(node, key)
    return child.value if isinstance(child, yaml.ScalarNode) else None
