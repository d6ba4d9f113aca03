"""The DOT writer: pure text, no graphviz package and no `dot` binary needed.

A picture is a tree of clusters holding nodes, plus edges; everything is written once, in the
order it was added, with attributes in the order given: the same picture is the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field


def quote(text) -> str:
    """A DOT string literal. Backslashes and quotes are escaped and newlines become \\n, so no
    label can end the string or smuggle in a DOT escape; < > & are safe inside quotes, and the
    SVG writer escapes them itself."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{text}"'


def attributes(attrs) -> str:
    items = [f"{key}={quote(value)}" for key, value in attrs.items() if value is not None]
    return f" [{', '.join(items)}]" if items else ""


@dataclass
class Cluster:
    name: str                 # DOT name, "cluster_..." (graphviz draws only those as boxes)
    attrs: dict
    nodes: list = field(default_factory=list)      # (name, attrs)
    children: list = field(default_factory=list)   # Cluster
    same_rank: list = field(default_factory=list)  # groups of node names drawn side by side


@dataclass
class Picture:
    attrs: dict
    node_defaults: dict
    edge_defaults: dict
    root: Cluster = field(default_factory=lambda: Cluster("", {}))
    edges: list = field(default_factory=list)      # (tail, head, attrs)


def write(picture: Picture, name="bptt") -> str:
    lines = [f"digraph {name} {{"]  # a plain identifier: graphviz.Digraph writes it the same way
    lines.append(f"  graph{attributes(picture.attrs)};")
    lines.append(f"  node{attributes(picture.node_defaults)};")
    lines.append(f"  edge{attributes(picture.edge_defaults)};")
    stack = [(picture.root, 1, False)]
    while stack:  # iterative: clusters nest as deep as scopes do
        cluster, depth, closing = stack.pop()
        pad = "  " * depth
        if closing:
            lines.append(pad[:-2] + "}")
            continue
        if cluster is not picture.root:
            lines.append(f"{pad[:-2]}subgraph {quote(cluster.name)} {{")
            for key, value in cluster.attrs.items():
                lines.append(f"{pad}{key}={quote(value)};")
            stack.append((cluster, depth, True))
        for node, attrs in cluster.nodes:
            lines.append(f"{pad}{quote(node)}{attributes(attrs)};")
        for group in cluster.same_rank:
            lines.append(f"{pad}{{rank=same; {' '.join(quote(n) + ';' for n in group)}}}")
        for child in reversed(cluster.children):
            stack.append((child, depth + 1, False))
    for tail, head, attrs in picture.edges:
        lines.append(f"  {quote(tail)} -> {quote(head)}{attributes(attrs)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
