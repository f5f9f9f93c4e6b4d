"""providers.yaml as YAML nodes: composed with a node cap, turned into values that keep their line.

Every value remembers where it came from, so a mistake is reported as file:line: key.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError

MAX_NODES = 20_000


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, stopped while composing once the document has too many nodes."""

    path = "providers.yaml"
    composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # Counted as the nodes are built: a 1 MiB flow list is half a million of them.
        self.composed += 1
        if self.composed > MAX_NODES:
            raise ConfigError(
                f"has more than {MAX_NODES} YAML nodes; a providers.yaml is far smaller",
                file=self.path,
            )
        return super().compose_node(parent, index)


class Doc:
    """Turns a composed YAML node tree into Python values, remembering each key's line."""

    def __init__(self, path: str, loader: yaml.SafeLoader) -> None:
        self.path, self.loader, self.nodes = path, loader, 0

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(message, file=self.path, line=line, key=key)

    def value(self, node: yaml.Node, key: str) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:  # aliases can make a small file expand without limit
            raise self.error(node, key, "document is too large or too deeply aliased")
        if isinstance(node, yaml.MappingNode):
            return {k: v for k, (_, v) in self.mapping(node, key).items()}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, f"{key}[{i}]") for i, item in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(node, key, f"bad value ({exc.__class__.__name__})") from None
        except Exception:  # PyYAML's constructors raise ValueError, AttributeError... on 2024-02-30
            raise self.error(
                node,
                key,
                "bad value (not a valid date, number or string; quote it to make it a string)",
            ) from None

    def mapping(self, node: yaml.Node, key: str) -> dict[str, tuple[yaml.Node, Any]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, "must be a mapping of keys to values")
        out: dict[str, tuple[yaml.Node, Any]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise self.error(knode, key, "keys must be plain strings")
            name = str(knode.value)
            if name in out:
                raise self.error(knode, f"{key}.{name}" if key else name, "duplicate key")
            out[name] = (knode, self.value(vnode, f"{key}.{name}" if key else name))
        return out


def raw_value(node: yaml.Node, key: str) -> str:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if getattr(k, "value", None) == key and isinstance(v, yaml.ScalarNode):
                return str(v.value)
    return ""
