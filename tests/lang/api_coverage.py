#!/usr/bin/env python3
"""Every RPC of satlab.v1.TrainingService has a method in every client.

Reads the `rpc Name(` lines of proto/satlab/v1/training_service.proto and
looks for each name in the public API of
  C++     client/client.h          `Name(` declared in class Client
  Python  client/python/satlab/client.py  `def name_in_snake_case` in class Client
  Node    client/node/satlab.d.ts  `nameInLowerCamel(` in class Client (the typed API)
  Go      client/go/*.go           `func (c *Client) Name(`
Exits 1 naming every missing (client, RPC) pair. Before the real check it
runs itself on a proto with an extra RPC that no client has, and fails if
that goes unnoticed (a checker that cannot fail checks nothing).

Usage: api_coverage.py [REPO]
"""

import ast
import pathlib
import re
import sys

RPC_RE = re.compile(r"^\s*rpc\s+(\w+)\s*\(", re.M)


def rpcs(proto_text):
    names = RPC_RE.findall(proto_text)
    if not names:
        raise SystemExit("api_coverage: no `rpc` lines found in the proto")
    return names


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def class_block(text, start_re):
    """The text of a C-like class body starting at start_re (brace matched)."""
    m = re.search(start_re, text, re.M)
    if not m:
        return ""
    i = text.index("{", m.end() - 1)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j + 1]
    return text[i:]


def cpp_methods(repo):
    body = class_block((repo / "client/client.h").read_text(), r"^class Client \{")
    return set(re.findall(r"\b([A-Z]\w*)\(", body))


def python_methods(repo):
    tree = ast.parse((repo / "client/python/satlab/client.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Client":
            return {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")}
    return set()


def node_methods(repo):
    body = class_block((repo / "client/node/satlab.d.ts").read_text(), r"^export declare class Client \{")
    return set(re.findall(r"^\s+([a-z]\w*)\(", body, re.M))


def go_methods(repo):
    found = set()
    for f in sorted((repo / "client/go").glob("*.go")):
        if f.name.endswith("_test.go"):
            continue
        found |= set(re.findall(r"^func \(\w+ \*Client\) ([A-Z]\w*)\(", f.read_text(), re.M))
    return found


CLIENTS = [
    ("C++ (client/client.h)", cpp_methods, lambda rpc: rpc),
    ("Python (client/python/satlab/client.py)", python_methods, snake),
    ("Node (client/node/satlab.d.ts)", node_methods, lambda rpc: rpc[0].lower() + rpc[1:]),
    ("Go (client/go)", go_methods, lambda rpc: rpc),
]


def missing(repo, proto_text):
    out = []
    for label, methods, name_of in CLIENTS:
        have = methods(repo)
        if not have:
            out.append((label, "<no Client class found>"))
        for rpc in rpcs(proto_text):
            if name_of(rpc) not in have:
                out.append((label, f"{rpc} (expected {name_of(rpc)})"))
    return out


def self_test(repo, proto_text):
    extra = proto_text.replace("service TrainingService {",
                               "service TrainingService {\n  rpc ZzUnimplementedProbe(Empty) returns (Empty);", 1)
    gaps = missing(repo, extra)
    flagged = {label for label, what in gaps if what.startswith("ZzUnimplementedProbe")}
    if len(flagged) != len(CLIENTS):
        raise SystemExit(f"api_coverage: self-test failed: an RPC missing everywhere was flagged only for {flagged}")


def main():
    repo = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
    proto_text = (repo / "proto/satlab/v1/training_service.proto").read_text()
    self_test(repo, proto_text)
    gaps = missing(repo, proto_text)
    names = rpcs(proto_text)
    if gaps:
        for label, what in gaps:
            print(f"api_coverage: {label} lacks {what}", file=sys.stderr)
        return 1
    print(f"api_coverage: all {len(names)} RPCs ({', '.join(names)}) in C++, Python, Node and Go")
    return 0


if __name__ == "__main__":
    sys.exit(main())
