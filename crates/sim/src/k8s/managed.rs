//! Managed fields and server-side apply.
//!
//! Every write names a field manager (the `fieldManager` parameter, else
//! the User-Agent's product name), and `metadata.managedFields` records
//! which manager set which fields, in the real server's FieldsV1 form
//! (`{"f:spec": {"f:replicas": {}}}`, `k:{"name":"web"}` for an element of
//! a keyed list, `v:"x"` for a set member). A server-side apply
//! (`application/apply-patch+yaml`) merges the applied configuration into
//! the object following the schema's list and map types, removes fields the
//! same manager applied before and no longer does (unless someone else owns
//! them), and refuses with 409 when another manager owns a field it would
//! change, unless `force` takes the field over.
//!
//! Not modelled: version conversion of managed fields, the
//! `before-first-apply` manager, and the per-field reset strategies beyond
//! identity metadata and status.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::catalog::ResourceType;
use super::errors::ApiError;
use super::openapi;
use super::store::now;

/// A field, as the steps of its FieldsV1 path: `f:spec`, `k:{"name":"a"}`,
/// `v:"x"`, or `.` for a keyed list element itself.
type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

/// Metadata the server owns, which no manager is recorded for.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The manager a request writes as: its `fieldManager`, else the part of
/// its User-Agent before the first `/`, as the real server derives it.
pub fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    field_manager
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or_else(|| {
            user_agent
                .and_then(|ua| ua.split('/').next())
                .filter(|p| !p.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string())
}

struct Schemas {
    defs: &'static Map<String, Value>,
    root: Value,
}

impl Schemas {
    fn of(rt: &ResourceType) -> Option<Self> {
        let (defs, root) = openapi::schemas_of(rt)?;
        Some(Self { defs, root })
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        openapi::resolve(self.defs, schema)
    }
}

fn property<'a>(schema: &'a Value, key: &str) -> &'a Value {
    static EMPTY: Value = Value::Null;
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
        .unwrap_or(&EMPTY)
}

fn is_atomic(schema: &Value) -> bool {
    schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
}

fn list_type(schema: &Value) -> &str {
    schema
        .get("x-kubernetes-list-type")
        .and_then(Value::as_str)
        .unwrap_or("atomic")
}

fn map_keys(schema: &Value) -> Vec<String> {
    schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| {
            k.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `k:{...}` step of a keyed list element: its key fields as compact
/// JSON with sorted keys, as Go writes them.
fn key_step(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    for k in sorted {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

fn walk(s: &Schemas, schema: &Value, value: &Value, prefix: &Path, out: &mut FieldSet) {
    let schema = s.resolve(schema);
    if is_atomic(schema) {
        out.insert(prefix.clone());
        return;
    }
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let mut p = prefix.clone();
                p.push(format!("f:{k}"));
                walk(s, property(schema, k), v, &p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
            match list_type(schema) {
                "map" => {
                    let keys = map_keys(schema);
                    for item in items {
                        let mut p = prefix.clone();
                        p.push(key_step(item, &keys));
                        let mut dot = p.clone();
                        dot.push(".".into());
                        out.insert(dot);
                        let resolved = s.resolve(&item_schema).clone();
                        if let Value::Object(m) = item {
                            for (k, v) in m {
                                let mut q = p.clone();
                                q.push(format!("f:{k}"));
                                walk(s, property(&resolved, k), v, &q, out);
                            }
                        }
                    }
                }
                "set" => {
                    for item in items {
                        let mut p = prefix.clone();
                        p.push(format!("v:{item}"));
                        out.insert(p);
                    }
                }
                _ => {
                    out.insert(prefix.clone());
                }
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

/// The fields an object sets, leaving out what the server owns: identity
/// metadata, and status (or, for the status subresource, all but status).
fn fields(s: &Schemas, rt: &ResourceType, obj: &Value, subresource: Option<&str>) -> FieldSet {
    let mut out = FieldSet::new();
    let root = s.resolve(&s.root).clone();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        let status_write = subresource == Some("status");
        let tracked = match k.as_str() {
            "apiVersion" | "kind" => false,
            "status" => status_write || !rt.has_status,
            _ => !status_write,
        };
        if !tracked {
            continue;
        }
        let p = vec![format!("f:{k}")];
        if k == "metadata" {
            let meta_schema = s.resolve(property(&root, "metadata")).clone();
            for (mk, mv) in v.as_object().into_iter().flatten() {
                if SERVER_METADATA.contains(&mk.as_str()) {
                    continue;
                }
                let mut q = p.clone();
                q.push(format!("f:{mk}"));
                walk(s, property(&meta_schema, mk), mv, &q, &mut out);
            }
        } else {
            walk(s, property(&root, k), v, &p, &mut out);
        }
    }
    out
}

/// The value at a path, None where it is absent.
fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for step in path {
        cur = if let Some(f) = step.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?
                .iter()
                .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
        } else if let Some(v) = step.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            cur.as_array()?.iter().find(|item| **item == want)?
        } else {
            cur
        };
    }
    Some(cur)
}

/// Whether a path holds the same value in both objects (for a list
/// element's `.`, whether it exists in both).
fn same_at(a: &Value, b: &Value, path: &[String]) -> bool {
    if path.last().map(String::as_str) == Some(".") {
        return get(a, path).is_some() == get(b, path).is_some();
    }
    get(a, path) == get(b, path)
}

/// Removes the field at a path from an object, if there.
fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if last == "." {
        // A keyed element: remove it from its list.
        let Some((key_step, list_path)) = parents.split_last() else {
            return;
        };
        let Some(list) = get_mut(obj, list_path).and_then(Value::as_array_mut) else {
            return;
        };
        let Some(k) = key_step.strip_prefix("k:") else {
            return;
        };
        if let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) {
            list.retain(|item| !key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
        }
        return;
    }
    let Some(parent) = get_mut(obj, parents) else {
        return;
    };
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = parent.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(v) = last.strip_prefix("v:") {
        if let (Ok(want), Some(list)) = (serde_json::from_str::<Value>(v), parent.as_array_mut()) {
            list.retain(|item| *item != want);
        }
    }
}

fn get_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for step in path {
        cur = if let Some(f) = step.strip_prefix("f:") {
            cur.get_mut(f)?
        } else if let Some(k) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array_mut()?
                .iter_mut()
                .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
        } else {
            cur
        };
    }
    Some(cur)
}

/// Merges an applied configuration into the current object: maps and
/// structs field by field, keyed lists element by element, sets by member;
/// atomic lists, atomic maps and scalars are replaced.
fn merge(s: &Schemas, schema: &Value, current: &Value, applied: &Value) -> Value {
    let schema = s.resolve(schema).clone();
    if is_atomic(&schema) {
        return applied.clone();
    }
    match (current, applied) {
        (Value::Object(c), Value::Object(a)) => {
            let mut out = c.clone();
            for (k, v) in a {
                let merged = match c.get(k) {
                    Some(old) => merge(s, property(&schema, k), old, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(c), Value::Array(a)) => match list_type(&schema) {
            "map" => {
                let keys = map_keys(&schema);
                let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
                let mut out = c.clone();
                for item in a {
                    let step = key_step(item, &keys);
                    match out.iter().position(|o| key_step(o, &keys) == step) {
                        Some(i) => out[i] = merge(s, &item_schema, &out[i], item),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
            "set" => {
                let mut out = c.clone();
                for item in a {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            _ => applied.clone(),
        },
        _ => applied.clone(),
    }
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for step in path {
            let next = cur
                .entry(step.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            cur = next.as_object_mut().expect("FieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    go(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// One managedFields entry.
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: Value,
    fields: FieldSet,
}

impl Entry {
    fn read(v: &Value) -> Option<Self> {
        Some(Self {
            manager: v["manager"].as_str()?.to_string(),
            operation: v["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: v["apiVersion"].as_str().unwrap_or("").to_string(),
            subresource: v["subresource"].as_str().map(str::to_string),
            time: v["time"].clone(),
            fields: from_fields_v1(&v["fieldsV1"]),
        })
    }

    fn write(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            v["subresource"] = json!(sub);
        }
        v
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

fn entries_of(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o["metadata"]["managedFields"].as_array())
        .map(|a| a.iter().filter_map(Entry::read).collect())
        .unwrap_or_default()
}

fn store_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::write)
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Records a create, update or non-apply patch by `manager`: it owns what
/// it changed, and every other manager loses those fields.
pub fn record_update(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let Some(s) = Schemas::of(rt) else {
        return;
    };
    // A client that sends an empty list resets the record.
    if new["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|a| a.is_empty())
    {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        return;
    }
    let mut entries = entries_of(old);
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let old_fields = fields(&s, rt, old_obj, subresource);
    let new_fields = fields(&s, rt, new, subresource);
    let removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| !same_at(old_obj, new, p))
        .cloned()
        .chain(removed.iter().cloned())
        .collect();
    if !changed.is_empty() {
        for e in entries.iter_mut() {
            if !e.is(manager, "Update", subresource) {
                e.fields.retain(|p| !changed.contains(p));
            }
        }
        let owned: FieldSet = changed.difference(&removed).cloned().collect();
        match entries
            .iter_mut()
            .find(|e| e.is(manager, "Update", subresource))
        {
            Some(e) => {
                e.fields.extend(owned);
                e.fields.retain(|p| !removed.contains(p));
                e.time = json!(now());
                e.api_version = rt.api_version();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: rt.api_version(),
                subresource: subresource.map(str::to_string),
                time: json!(now()),
                fields: owned,
            }),
        }
    }
    store_entries(new, entries);
}

/// A server-side apply of `applied` by `manager` onto `current` (None when
/// the object does not exist yet): the object to store, managedFields set.
pub fn apply(
    rt: &ResourceType,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    let Some(s) = Schemas::of(rt) else {
        return Err(ApiError::internal(format!(
            "the simulator has no schema for {}",
            rt.kind
        )));
    };
    let empty = json!({});
    let current_obj = current.unwrap_or(&empty);
    let mut entries = entries_of(current);
    let applied_fields = fields(&s, rt, applied, subresource);
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.is(manager, "Apply", subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    // Fields another manager owns that this apply would change.
    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    for e in &entries {
        if e.manager == manager || e.subresource.as_deref() != subresource {
            continue;
        }
        for p in e.fields.intersection(&applied_fields) {
            if !same_at(current_obj, applied, p) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    let taken: FieldSet = conflicts.iter().map(|(_, _, p)| p.clone()).collect();
    for e in entries.iter_mut() {
        if e.manager != manager {
            e.fields.retain(|p| !taken.contains(p));
        }
    }

    let mut result = merge(&s, &s.root, current_obj, applied);
    // What this manager applied before and no longer does goes, unless
    // another manager also owns it.
    let owned_by_others: FieldSet = entries
        .iter()
        .filter(|e| !e.is(manager, "Apply", subresource))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = previous
        .difference(&applied_fields)
        .filter(|p| !owned_by_others.contains(*p))
        .collect();
    // Deepest first, so a list element goes after its fields.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove(&mut result, p);
    }
    match entries
        .iter_mut()
        .find(|e| e.is(manager, "Apply", subresource))
    {
        Some(e) => {
            e.fields = applied_fields;
            e.time = json!(now());
            e.api_version = rt.api_version();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: rt.api_version(),
            subresource: subresource.map(str::to_string),
            time: json!(now()),
            fields: applied_fields,
        }),
    }
    store_entries(&mut result, entries);
    Ok(result)
}

/// `.spec.template.spec.containers[name="web"].image`: a path as the
/// real server names it in a conflict.
fn render(path: &Path) -> String {
    let mut out = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = step.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// The 409 an apply gets for fields other managers own, in the real
/// server's words.
fn conflict_error(conflicts: &[(String, String, Path)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, v, p)| {
            json!({"reason": "FieldManagerConflict",
                   "message": format!("conflict with \"{m}\" using {v}"),
                   "field": render(p)})
        })
        .collect();
    let message = if conflicts.len() == 1 {
        let (m, v, p) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with \"{m}\" using {v}: {}",
            render(p)
        )
    } else {
        let mut by_manager: Vec<(String, String, Vec<String>)> = Vec::new();
        for (m, v, p) in conflicts {
            match by_manager.iter_mut().find(|(bm, bv, _)| bm == m && bv == v) {
                Some((_, _, paths)) => paths.push(render(p)),
                None => by_manager.push((m.clone(), v.clone(), vec![render(p)])),
            }
        }
        let parts: Vec<String> = by_manager
            .iter()
            .map(|(m, v, paths)| {
                let list: Vec<String> = paths.iter().map(|p| format!("- {p}")).collect();
                format!("conflicts with \"{m}\" using {v}:\n{}", list.join("\n"))
            })
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            parts.join("\n")
        )
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(json!({"causes": causes})),
    }
}
