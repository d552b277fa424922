//! The OpenAPI documents a real API server publishes, for the stored kinds:
//! `/openapi/v3` (an index) with one document per group version, and
//! `/openapi/v2` (all of them in one Swagger 2.0 document).
//!
//! kubectl reads the v3 documents to decide whether the server validates
//! fields itself (a `fieldValidation` parameter on the kind's PATCH; else
//! it validates client-side, from v2), to compute `apply`'s strategic merge
//! patches (the `x-kubernetes-patch-*` extensions) and for `explain`. The
//! schemas are k8s-openapi's; the Go markers that k8s-openapi leaves out
//! (patch strategy, list and map types) come from the generated table in
//! `protobuf`, and each kind's schema names its group, version and kind.
//!
//! client-go asks for v2 in gnostic's protobuf encoding only
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`), with no
//! JSON fallback; that encoding is not modelled, so such a request gets 406
//! and v2 is served as JSON. kubectl only falls back to v2 where v3 fails.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use super::catalog::{self, ResourceType};
use super::discovery::GIT_VERSION;
use super::protobuf;

/// A served document and the hash clients cache it under.
pub struct Document {
    pub body: String,
    pub hash: String,
    /// Its schemas, for field validation.
    schemas: Map<String, Value>,
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

fn gvk(rt: &ResourceType) -> Value {
    json!({"group": rt.group, "kind": rt.kind, "version": rt.version})
}

/// The OpenAPI definition name of a served kind.
fn definition(rt: &ResourceType) -> String {
    protobuf::definition_name(&rt.api_version(), rt.kind)
}

/// `api/v1` or `apis/apps/v1`: the path segment a group version is served
/// under.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Adds a kind's schema (and everything it refers to) to the generator.
fn add_kind(generator: &mut SchemaGenerator, rt: &ResourceType) {
    use api::core::v1 as core;
    match (rt.group, rt.kind) {
        ("", "Namespace") => generator.subschema_for::<core::Namespace>(),
        ("", "Node") => generator.subschema_for::<core::Node>(),
        ("", "Pod") => generator.subschema_for::<core::Pod>(),
        ("", "Event") => generator.subschema_for::<core::Event>(),
        ("", "Secret") => generator.subschema_for::<core::Secret>(),
        ("", "ServiceAccount") => generator.subschema_for::<core::ServiceAccount>(),
        ("", "ConfigMap") => generator.subschema_for::<core::ConfigMap>(),
        ("", "Service") => generator.subschema_for::<core::Service>(),
        ("", "PersistentVolumeClaim") => generator.subschema_for::<core::PersistentVolumeClaim>(),
        ("", "PersistentVolume") => generator.subschema_for::<core::PersistentVolume>(),
        ("apps", "Deployment") => generator.subschema_for::<api::apps::v1::Deployment>(),
        ("apps", "ReplicaSet") => generator.subschema_for::<api::apps::v1::ReplicaSet>(),
        ("apps", "StatefulSet") => generator.subschema_for::<api::apps::v1::StatefulSet>(),
        ("networking.k8s.io", "Ingress") => {
            generator.subschema_for::<api::networking::v1::Ingress>()
        }
        ("events.k8s.io", "Event") => generator.subschema_for::<api::events::v1::Event>(),
        ("storage.k8s.io", "VolumeAttachment") => {
            generator.subschema_for::<api::storage::v1::VolumeAttachment>()
        }
        (group, kind) => unreachable!("catalog kind {group}/{kind} has no k8s-openapi type"),
    };
}

/// The schemas of `types`, their lists and the meta types the operations
/// name, with the Kubernetes extensions k8s-openapi leaves out. `path` is
/// where references point: `/components/schemas` (v3) or `/definitions`.
fn schemas(types: &[&ResourceType], path: &str) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.definitions_path = path.to_string().into())
        .into_generator();
    for rt in types {
        add_kind(&mut generator, rt);
    }
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::ListMeta>();
    let mut defs = generator.take_definitions(true);
    let reference = |name: &str| json!({"$ref": format!("#{path}/{name}")});
    defs.insert(
        format!("{META}.Patch"),
        json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
    );
    for rt in types {
        let name = definition(rt);
        if let Some(schema) = defs.get_mut(&name) {
            schema["x-kubernetes-group-version-kind"] = json!([gvk(rt)]);
        }
        let mut list_gvk = gvk(rt);
        list_gvk["kind"] = json!(format!("{}List", rt.kind));
        defs.insert(
            format!("{name}List"),
            json!({
                "description": format!("{}List is a list of {}.", rt.kind, rt.kind),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "items": {"type": "array", "items": reference(&name)},
                    "metadata": {"allOf": [reference(&format!("{META}.ListMeta"))], "default": {}},
                },
                "x-kubernetes-group-version-kind": [list_gvk],
            }),
        );
    }
    for (def, field, merge) in protobuf::merge_fields() {
        let Some(property) = defs
            .get_mut(def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let mut set = |key: &str, value: &str| {
            if !value.is_empty() {
                property.insert(key.into(), json!(value));
            }
        };
        set("x-kubernetes-patch-strategy", merge.strategy);
        set("x-kubernetes-patch-merge-key", merge.key);
        set("x-kubernetes-list-type", merge.list_type);
        set("x-kubernetes-map-type", merge.map_type);
        if !merge.map_keys.is_empty() {
            property.insert("x-kubernetes-list-map-keys".into(), json!(merge.map_keys));
        }
    }
    defs
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": schema, "uniqueItems": true})
}

fn string() -> Value {
    json!({"type": "string"})
}

/// The operations on one path, as (method, action, operation id, query
/// parameter names, body content types or none, answer definition).
struct Op {
    method: &'static str,
    action: &'static str,
    id_verb: &'static str,
    params: &'static [&'static str],
    body: Option<&'static [&'static str]>,
    answer: String,
}

const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const DELETE_PARAMS: &[&str] = &["dryRun", "gracePeriodSeconds", "propagationPolicy"];
const OBJECT_TYPES: &[&str] = &["*/*"];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fn param_schema(name: &str) -> Value {
    match name {
        "limit" | "timeoutSeconds" | "gracePeriodSeconds" => json!({"type": "integer"}),
        "allowWatchBookmarks" | "watch" | "force" | "sendInitialEvents" => {
            json!({"type": "boolean"})
        }
        _ => string(),
    }
}

/// The path items of one kind, keyed by path.
fn kind_paths(
    rt: &ResourceType,
    reference: &dyn Fn(&str) -> Value,
    v3: bool,
) -> Vec<(String, Value)> {
    let gv = group_version_path(rt.group, rt.version);
    let def = definition(rt);
    let group_id: String = if rt.group.is_empty() {
        "Core".into()
    } else {
        rt.group
            .split('.')
            .next()
            .map(|g| {
                let mut c = g.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    let version_id = {
        let mut c = rt.version.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let scope = if rt.namespaced { "Namespaced" } else { "" };
    let base = if rt.namespaced {
        format!("/{gv}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("/{gv}/{}", rt.plural)
    };
    let ops = |op: &Op, sub: &str| -> Value {
        let mut params: Vec<Value> = op
            .params
            .iter()
            .map(|p| query(p, "", param_schema(p)))
            .collect();
        if !v3 {
            for p in params.iter_mut() {
                let schema = p.as_object_mut().unwrap().remove("schema").unwrap();
                p["type"] = schema["type"].clone();
            }
        }
        let mut operation = json!({
            "operationId": format!("{}{group_id}{version_id}{scope}{}{sub}", op.id_verb, rt.kind),
            "tags": [format!("{}_{}", if rt.group.is_empty() { "core" } else { rt.group }, rt.version)],
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": gvk(rt),
        });
        let answer = reference(&op.answer);
        if v3 {
            operation["responses"] = json!({"200": {"description": "OK", "content": {
                "application/json": {"schema": answer.clone()},
                "application/yaml": {"schema": answer.clone()},
                "application/vnd.kubernetes.protobuf": {"schema": answer}}}});
            if let Some(types) = op.body {
                let schema = if op.method == "patch" {
                    reference(&format!("{META}.Patch"))
                } else {
                    reference(&def)
                };
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": schema.clone()})))
                    .collect();
                operation["requestBody"] = json!({"content": content, "required": true});
            }
        } else {
            operation["responses"] = json!({"200": {"description": "OK", "schema": answer}});
            operation["produces"] = json!([
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf"
            ]);
            operation["schemes"] = json!(["https"]);
            if let Some(types) = op.body {
                let schema = if op.method == "patch" {
                    reference(&format!("{META}.Patch"))
                } else {
                    reference(&def)
                };
                operation["consumes"] = json!(types);
                operation["parameters"] =
                    json!([{"name": "body", "in": "body", "required": true, "schema": schema}]);
            }
        }
        let params = Value::Array(params);
        if v3 || op.body.is_none() {
            operation["parameters"] = params;
        } else if let (Some(list), Value::Array(mut more)) =
            (operation["parameters"].as_array().cloned(), params)
        {
            more.extend(list);
            operation["parameters"] = Value::Array(more);
        }
        operation
    };
    let path_params = |named: bool| -> Value {
        let mut p = Vec::new();
        if named {
            p.push(json!({"name": "name", "in": "path", "required": true, "description": format!("name of the {}", rt.kind)}));
        }
        if rt.namespaced {
            p.push(json!({"name": "namespace", "in": "path", "required": true, "description": "object name and auth scope, such as for teams and projects"}));
        }
        for item in p.iter_mut() {
            if v3 {
                item["schema"] = string();
            } else {
                item["type"] = json!("string");
            }
        }
        Value::Array(p)
    };
    let item = |ops_list: Vec<Op>, sub: &str, named: bool| -> Value {
        let mut v = json!({"parameters": path_params(named)});
        for op in &ops_list {
            v[op.method] = ops(op, sub);
        }
        v
    };
    let object = || def.clone();
    let collection = vec![
        Op {
            method: "get",
            action: "list",
            id_verb: "list",
            params: LIST_PARAMS,
            body: None,
            answer: format!("{def}List"),
        },
        Op {
            method: "post",
            action: "post",
            id_verb: "create",
            params: WRITE_PARAMS,
            body: Some(OBJECT_TYPES),
            answer: object(),
        },
        Op {
            method: "delete",
            action: "deletecollection",
            id_verb: "deleteCollection",
            params: DELETE_PARAMS,
            body: None,
            answer: format!("{META}.Status"),
        },
    ];
    let named = |with_delete: bool| {
        let mut v = vec![
            Op {
                method: "get",
                action: "get",
                id_verb: "read",
                params: &[],
                body: None,
                answer: object(),
            },
            Op {
                method: "put",
                action: "put",
                id_verb: "replace",
                params: WRITE_PARAMS,
                body: Some(OBJECT_TYPES),
                answer: object(),
            },
            Op {
                method: "patch",
                action: "patch",
                id_verb: "patch",
                params: PATCH_PARAMS,
                body: Some(PATCH_TYPES),
                answer: object(),
            },
        ];
        if with_delete {
            v.push(Op {
                method: "delete",
                action: "delete",
                id_verb: "delete",
                params: DELETE_PARAMS,
                body: None,
                answer: format!("{META}.Status"),
            });
        }
        v
    };
    let collection: Vec<Op> = if rt.plural == "namespaces" {
        collection
            .into_iter()
            .filter(|o| o.method != "delete")
            .collect()
    } else {
        collection
    };
    let mut out = vec![
        (base.clone(), item(collection, "", false)),
        (format!("{base}/{{name}}"), item(named(true), "", true)),
    ];
    if rt.has_status {
        out.push((
            format!("{base}/{{name}}/status"),
            item(named(false), "Status", true),
        ));
    }
    if rt.namespaced {
        let all = vec![Op {
            method: "get",
            action: "list",
            id_verb: "list",
            params: LIST_PARAMS,
            body: None,
            answer: format!("{def}List"),
        }];
        let mut v = item(all, "ForAllNamespaces", false);
        if let Some(get) = v.get_mut("get") {
            get["operationId"] = json!(format!(
                "list{group_id}{version_id}{}ForAllNamespaces",
                rt.kind
            ));
        }
        out.push((format!("/{gv}/{}", rt.plural), v));
    }
    out
}

fn hash(body: &str) -> String {
    hex::encode_upper(Sha512::digest(body.as_bytes()))
}

fn v3_document(group: &str, version: &str) -> Document {
    let types: Vec<&ResourceType> = catalog::TYPES
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let mut paths = BTreeMap::new();
    for rt in &types {
        paths.extend(kind_paths(rt, &reference, true));
    }
    let component_schemas = schemas(&types, "/components/schemas");
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {
            "schemas": component_schemas.clone(),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "in": "header", "name": "authorization", "description": "Bearer Token authentication"}},
        },
        "security": [{"BearerToken": []}],
    });
    let body = doc.to_string();
    Document {
        hash: hash(&body),
        body,
        schemas: component_schemas,
    }
}

/// The fields of `obj` (a `rt` object, or a patch of one when `patch`)
/// that its schema does not declare, as paths: `spec.replicsa`,
/// `spec.template.spec.containers[0].imagee`.
pub fn unknown_fields(rt: &ResourceType, obj: &Value, patch: bool) -> Vec<String> {
    let Some(doc) = v3(&group_version_path(rt.group, rt.version)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let root = json!({"$ref": format!("#/components/schemas/{}", definition(rt))});
    walk(&doc.schemas, &root, obj, "", patch, &mut out);
    out
}

/// The schemas of `rt`'s group version and a reference to `rt`'s own.
pub(crate) fn schemas_of(rt: &ResourceType) -> Option<(&'static Map<String, Value>, Value)> {
    let doc = v3(&group_version_path(rt.group, rt.version))?;
    Some((
        &doc.schemas,
        json!({"$ref": format!("#/components/schemas/{}", definition(rt))}),
    ))
}

/// Follows `$ref` and single `allOf` wrappers to the schema itself.
pub(crate) fn resolve<'a>(schemas: &'a Map<String, Value>, mut schema: &'a Value) -> &'a Value {
    for _ in 0..8 {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            match r
                .strip_prefix("#/components/schemas/")
                .and_then(|n| schemas.get(n))
            {
                Some(s) => schema = s,
                None => return schema,
            }
        } else if let Some(first) = schema.get("allOf").and_then(|a| a.get(0)) {
            schema = first;
        } else {
            break;
        }
    }
    schema
}

fn walk(
    schemas: &Map<String, Value>,
    schema: &Value,
    value: &Value,
    path: &str,
    patch: bool,
    out: &mut Vec<String>,
) {
    let schema = resolve(schemas, schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let join = |k: &str| {
                if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                }
            };
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in fields {
                    if patch && (k.starts_with('$') || v.is_null()) {
                        continue;
                    }
                    match properties.get(k) {
                        Some(sub) => walk(schemas, sub, v, &join(k), patch, out),
                        None => out.push(join(k)),
                    }
                }
            } else if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (k, v) in fields {
                    walk(schemas, sub, v, &join(k), patch, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(schemas, sub, item, &format!("{path}[{i}]"), patch, out);
                }
            }
        }
        _ => {}
    }
}

/// The group versions served, as (group, version).
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for t in catalog::TYPES {
        if !out.contains(&(t.group, t.version)) {
            out.push((t.group, t.version));
        }
    }
    out
}

fn v3_documents() -> &'static BTreeMap<String, Document> {
    static DOCS: OnceLock<BTreeMap<String, Document>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(g, v)| (group_version_path(g, v), v3_document(g, v)))
            .collect()
    })
}

/// `/openapi/v3`: where each group version's document is.
pub fn v3_index() -> Value {
    let paths: Map<String, Value> = v3_documents()
        .iter()
        .map(|(path, doc)| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// The v3 document of `api/v1` or `apis/<group>/<version>`.
pub fn v3(path: &str) -> Option<&'static Document> {
    v3_documents().get(path)
}

/// `/openapi/v2`: every stored kind in one Swagger 2.0 document.
pub fn v2() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| {
        let types: Vec<&ResourceType> = catalog::TYPES.iter().collect();
        let reference = |name: &str| json!({"$ref": format!("#/definitions/{name}")});
        let mut paths = BTreeMap::new();
        for rt in &types {
            paths.extend(kind_paths(rt, &reference, false));
        }
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths,
            "definitions": schemas(&types, "/definitions"),
            "securityDefinitions": {"BearerToken": {"type": "apiKey", "in": "header", "name": "authorization", "description": "Bearer Token authentication"}},
            "security": [{"BearerToken": []}],
        });
        let body = doc.to_string();
        Document {
            hash: hash(&body),
            body,
            schemas: Map::new(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str) -> Value {
        serde_json::from_str(&v3(path).unwrap().body).unwrap()
    }

    #[test]
    fn the_index_points_at_each_group_versions_document_by_hash() {
        let index = v3_index();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert_eq!(
            url,
            format!(
                "/openapi/v3/apis/apps/v1?hash={}",
                v3("apis/apps/v1").unwrap().hash
            )
        );
        assert!(index["paths"]["api/v1"].is_object());
    }

    #[test]
    fn kinds_name_their_gvk_and_patches_offer_field_validation() {
        let apps = doc("apis/apps/v1");
        let schemas = &apps["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );

        let core = doc("api/v1");
        let containers = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]
            ["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        // Every reference resolves inside the document.
        let text = v3("api/v1").unwrap().body.clone();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(core["components"]["schemas"][name].is_object(), "{name}");
        }
    }

    #[test]
    fn unknown_fields_are_found_by_path_and_patch_directives_pass() {
        let rt = catalog::by_kind("apps/v1", "Deployment").unwrap();
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any": "thing"}},
            "spec": {"replicsa": 1, "template": {"spec": {"containers": [{"name": "a", "imagee": "x"}]}}}});
        assert_eq!(
            unknown_fields(rt, &obj, false),
            ["spec.replicsa", "spec.template.spec.containers[0].imagee"]
        );
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"spec": {"$setElementOrder/containers": [{"name": "a"}]}}}});
        assert!(unknown_fields(rt, &patch, true).is_empty());
    }

    #[test]
    fn v2_holds_every_kind_with_references_to_definitions() {
        let doc: Value = serde_json::from_str(&v2().body).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        for rt in catalog::TYPES {
            assert!(
                doc["definitions"][definition(rt)].is_object(),
                "{}",
                rt.kind
            );
        }
        assert!(!v2().body.contains("#/components/"));
    }
}
