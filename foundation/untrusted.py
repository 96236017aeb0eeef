"""Limits for structured input Fleetweb did not write (request bodies, kubeconfigs, manifests, members' answers):
a nesting depth, and YAML without aliases. Code that walks such data recursively, or expands it, must not be
handed more than these."""

from __future__ import annotations

from typing import Any

import yaml

MAX_BODY_DEPTH = 32  # API request bodies: no field of the API nests deeper



def too_deep(value: Any, limit: int) -> bool:
    """Whether dicts and lists nest deeper than `limit` levels in `value` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors' aliases: no kubeconfig or manifest needs them, and expanded (when the
    data is serialized again) nine lines of them make gigabytes."""

    def compose_node(self, parent, index) -> yaml.Node | None:  # type: ignore[override]  # PyYAML's is untyped
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed here",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)
