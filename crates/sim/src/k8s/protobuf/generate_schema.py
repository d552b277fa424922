#!/usr/bin/env python3
"""Writes schema.rs: the protobuf field table of the kinds the simulated API
server stores and of every message they contain, and the merge markers of
their fields.

The field numbers and kinds come from the k8s-pb crate (prost bindings
generated from Kubernetes' generated.proto files), the JSON names from the
k8s-openapi crate (whose serde names are the API's JSON names): both are read
from cargo's registry sources, so run `cargo fetch` first. Run it again when
either crate is upgraded:

    python3 crates/sim/src/k8s/protobuf/generate_schema.py > crates/sim/src/k8s/protobuf/schema.rs
"""
import glob
import os
import re
import sys

REGISTRY = os.path.expanduser("~/.cargo/registry/src")


def newest(crate):
    found = sorted(glob.glob(f"{REGISTRY}/*/{crate}-[0-9]*"))
    if not found:
        sys.exit(f"{crate} is not in cargo's registry sources: run `cargo fetch` in the workspace")
    return found[-1]


PB = newest("k8s-pb") + "/src"
OPENAPI = sorted(glob.glob(newest("k8s-openapi") + "/src/v1_*"))[-1]

# The kinds served (catalog.rs), the option bodies clients send, and the
# access review `kubectl auth can-i` sends.
ROOTS = [
    "io.k8s.api.core.v1." + k
    for k in ["Namespace", "Node", "Pod", "Event", "Secret", "ServiceAccount", "ConfigMap",
              "Service", "PersistentVolumeClaim", "PersistentVolume"]
] + [
    "io.k8s.api.apps.v1.Deployment", "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.apps.v1.StatefulSet", "io.k8s.api.networking.v1.Ingress",
    "io.k8s.api.events.v1.Event", "io.k8s.api.storage.v1.VolumeAttachment",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.runtime.Unknown",
    "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
]

# Messages whose JSON form is not an object of their fields.
SPECIAL = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
}

# Go writes a value field to protobuf even when it is zero, so a zero
# usually means "not set". These are pointer fields, where a set zero or
# false says something other than the field's default.
ZERO_MEANS_SOMETHING = {
    "replicas", "revisionHistoryLimit", "progressDeadlineSeconds",
    "terminationGracePeriodSeconds", "activeDeadlineSeconds", "deletionGracePeriodSeconds",
    "gracePeriodSeconds", "automountServiceAccountToken", "enableServiceLinks",
    "allocateLoadBalancerNodePorts", "allowPrivilegeEscalation", "privileged", "runAsNonRoot",
    "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "fsGroup", "orphanDependents",
    "immutable", "optional", "controller", "blockOwnerDeletion", "shareProcessNamespace",
    "hostUsers", "setHostnameAsFQDN", "defaultMode", "mode", "ready", "started", "unschedulable",
}


def openapi_definitions():
    """definition name -> the JSON names of its fields."""
    defs = {}
    for path in glob.glob(OPENAPI + "/**/*.rs", recursive=True):
        text = open(path).read()
        m = re.match(r"// Generated from definition (\S+)", text)
        if not m:
            continue
        defs[m.group(1)] = re.findall(r'serialize_field\(&mut state, "([^"]+)"', text)
    return defs


def pb_messages():
    """definition name -> [(tag, rust name, kind, repeated, target)]."""
    messages = {}
    for path in glob.glob(PB + "/**/mod.rs", recursive=True):
        module = os.path.relpath(os.path.dirname(path), PB).split(os.sep)
        text = open(path).read()
        for m in re.finditer(r"\npub struct (\w+) \{(.*?)\n\}", text, re.S):
            name, body = m.group(1), m.group(2) + "\n"
            fields = []
            for docs, attr, rust, ty in re.findall(
                r"((?:[ \t]*///[^\n]*\n)*)[ \t]*#\[prost\(([^\]]*)\)\]\s*pub (?:r#)?(\w+):\s*(.*?),\n(?=\s*(?:///|#\[|\Z))", body, re.S
            ):
                markers = {}
                for key, value in re.findall(r"\+(patchStrategy|patchMergeKey|listType|listMapKey|mapType|structType)=([\w,]+)", docs):
                    markers.setdefault(key, []).append(value)
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                kind = attr.split(",")[0].strip()
                repeated = "repeated" in attr
                ty = re.sub(r"\s+", "", ty)
                target = None
                if kind.startswith("btree_map"):
                    key, value = re.search(r'"(\w+), (\w+)"', attr).groups()
                    kind = "map:" + value
                if kind in ("message", "map:message"):
                    inner = re.sub(r"::core::option::Option<|::prost::alloc::vec::Vec<|"
                                   r"::prost::alloc::boxed::Box<|::prost::alloc::collections::BTreeMap<"
                                   r"::prost::alloc::string::String,|>", "", ty)
                    parts = inner.strip(",").split("::")
                    ups = parts.count("super")
                    rest = [p for p in parts if p != "super"]
                    base = module[: len(module) - ups] if ups else module
                    target = (tuple(base + rest[:-1]), rest[-1])
                fields.append((tag, rust, kind, repeated, target, markers))
            messages[(tuple(module), name)] = fields
    return messages


def definition(module, name, defs):
    prefix = "io.k8s." + ".".join(module) + "."
    exact = prefix + name
    if exact in defs or exact in SPECIAL:
        return exact
    for d in list(defs) + list(SPECIAL):
        if d.lower() == exact.lower():
            return d
    return exact


def norm(s):
    return s.replace("_", "").lower()


def main():
    defs = openapi_definitions()
    pb = pb_messages()
    by_def = {definition(mod, name, defs): (mod, name) for (mod, name) in pb}
    # The envelope and its TypeMeta have no OpenAPI definition.
    names_of = dict(defs)
    names_of["io.k8s.apimachinery.pkg.runtime.Unknown"] = ["typeMeta", "raw", "contentEncoding", "contentType"]
    names_of["io.k8s.apimachinery.pkg.runtime.TypeMeta"] = ["apiVersion", "kind"]

    out = {}
    lists = []
    inline_parent = {}
    todo = list(ROOTS)
    while todo:
        d = todo.pop()
        if d in out or d in SPECIAL:
            continue
        if d not in by_def:
            sys.exit(f"k8s-pb has no message for {d}")
        json_names = {norm(n): n for n in names_of.get(d, [])}
        rows = []
        for tag, rust, kind, repeated, target, markers in pb[by_def[d]]:
            target_def = definition(target[0], target[1], defs) if target else None
            json = json_names.get(norm(rust))
            if json is None and kind == "message" and d in names_of and target_def in by_def \
                    and all(norm(r) in json_names for _, r, *_ in pb[by_def[target_def]]):
                # An embedded Go struct (`json:",inline"`): its fields sit
                # in this object's JSON, under this object's names.
                json = ""
                names_of[target_def] = names_of.get(target_def, []) + names_of[d]
                inline_parent[target_def] = inline_parent.get(d, d)
            if json is None:
                # A field k8s-openapi's newest version no longer has (an
                # alpha field that moved): the proto name's camel case.
                head, *tail = rust.split("_")
                json = head + "".join(t.title() for t in tail)
                print(f"note: {d}.{rust} is not in k8s-openapi; named {json}", file=sys.stderr)
            if target_def:
                todo.append(target_def)
            if kind == "message":
                ty = SPECIAL.get(target_def, None)
                ty = f'Ty::{ty}' if ty else f'Ty::Msg("{target_def}")'
            elif kind == "map:message":
                ty = SPECIAL.get(target_def, None)
                ty = f'Ty::{ty}' if ty else f'Ty::Msg("{target_def}")'
            else:
                scalar = kind.removeprefix("map:")
                ty = {"string": "Ty::Str", 'bytes = "vec"': "Ty::Bytes", "bytes": "Ty::Bytes",
                      "int32": "Ty::Int", "int64": "Ty::Int", "bool": "Ty::Bool"}[scalar]
            shape = "Map" if kind.startswith("map:") else ("Many" if repeated else "One")
            keep = "true" if json in ZERO_MEANS_SOMETHING else "false"
            rows.append(f'        f({tag}, "{json}", {ty}, Shape::{shape}, {keep}),')
            if markers and json:
                one = lambda k: markers.get(k, [""])[0]
                keys = ", ".join(f'"{k}"' for k in markers.get("listMapKey", []))
                lists.append(f'    ("{inline_parent.get(d, d)}", "{json}", Merge {{ strategy: "{one("patchStrategy")}", key: "{one("patchMergeKey")}", list_type: "{one("listType")}", map_keys: &[{keys}], map_type: "{one("mapType") or one("structType")}" }}),')
        out[d] = rows

    print("// Generated by generate_schema.py from the k8s-pb and k8s-openapi crates: do not edit.")
    print("//! The protobuf fields of the stored kinds and of every message they")
    print("//! contain: field number, JSON name (empty for an embedded struct), type.")
    print()
    print("use super::{f, Field, Merge, Shape, Ty};")
    print()
    print("/// Sorted by name, for binary search.")
    print("#[rustfmt::skip]")
    print("pub(super) static MESSAGES: &[(&str, &[Field])] = &[")
    for d in sorted(out):
        print(f'    ("{d}", &[')
        for r in out[d]:
            print(r)
        print("    ]),")
    print("];")
    print()
    print("/// How strategic merge patch and server-side apply treat a field: its")
    print("/// Go markers (+patchStrategy, +patchMergeKey, +listType, +listMapKey,")
    print("/// +mapType/+structType), by (definition, JSON name), sorted.")
    print("#[rustfmt::skip]")
    print("pub(crate) static MERGE: &[(&str, &str, Merge)] = &[")
    for row in sorted(set(lists)):
        print(row)
    print("];")


main()
