//! The simulated cluster's object storage and the API semantics on top of it:
//! create, get, list, update, patch and delete with the real server's
//! defaulting, validation, resourceVersion handling and error answers.
//!
//! Objects are stored as JSON in their storage form (events in core/v1 form,
//! shared with events.k8s.io/v1) under (storage, namespace, name), which keeps
//! a namespace's objects together so that listing one namespace does not
//! scan the others, as etcd's key layout does.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::catalog::{self, ResourceType};
use super::errors::ApiError;
use super::managed;
use super::patch;
use super::selector::{FieldSelector, LabelSelector};

pub(crate) type Key = (&'static str, String, String);

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub storage: &'static str,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    pub object: Value,
}

/// How long the watch history reaches back; older resourceVersions get 410.
const HISTORY: usize = 20_000;

pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    pub(crate) changes: broadcast::Sender<Arc<Change>>,
    /// When each pod deleted gracefully may be removed.
    pub(crate) terminating: HashMap<String, std::time::Instant>,
    /// Namespaces where the ServiceAccount controller does not act.
    pub(crate) service_account_controller_broken: HashSet<String>,
}

/// Which PATCH flavour a request uses, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// The list parameters the server honours.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// DELETE parameters (query or DeleteOptions body).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// Background, Foreground or Orphan.
    pub propagation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A random suffix in the alphabet Kubernetes uses for generated names.
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// The storage type of `rt`: core Event for events.k8s.io Events.
fn storage_type(rt: &ResourceType) -> &'static ResourceType {
    catalog::TYPES
        .iter()
        .find(|t| t.storage == rt.storage)
        .expect("every storage has a first type")
}

fn rename(from: &mut Map<String, Value>, to: &mut Map<String, Value>, a: &str, b: &str) {
    if let Some(v) = from.remove(a) {
        if !v.is_null() {
            to.insert(b.to_string(), v);
        }
    }
}

const EVENT_FIELD_PAIRS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("metadata", "metadata"),
];

/// Converts a stored object to the API version `rt` serves.
pub fn to_api(rt: &ResourceType, stored: &Value) -> Value {
    if rt.group != "events.k8s.io" {
        return stored.clone();
    }
    let mut from = stored.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    for (core, ev) in EVENT_FIELD_PAIRS {
        rename(&mut from, &mut out, core, ev);
    }
    if let Some(Value::Object(series)) = out.get_mut("series") {
        if let Some(t) = series.remove("lastObservedTime") {
            series.insert("lastObservedTime".into(), t);
        }
    }
    Value::Object(out)
}

/// Converts an object sent to `rt`'s endpoint to its storage form.
pub fn from_api(rt: &ResourceType, obj: &Value) -> Value {
    if rt.group != "events.k8s.io" {
        return obj.clone();
    }
    let mut from = obj.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("v1"));
    for (core, ev) in EVENT_FIELD_PAIRS {
        rename(&mut from, &mut out, ev, core);
    }
    Value::Object(out)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str()
}

impl Store {
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            objects: BTreeMap::new(),
            rv: 1000,
            history: VecDeque::new(),
            changes,
            terminating: HashMap::new(),
            service_account_controller_broken: HashSet::new(),
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn record(&mut self, storage: &'static str, kind: &'static str, object: Value) {
        let change = Arc::new(Change {
            rv: self.rv,
            storage,
            kind,
            object,
        });
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        let _ = self.changes.send(change);
    }

    /// Changes after `rv`, or None when the history no longer reaches back.
    pub(crate) fn changes_since(&self, rv: u64) -> Option<Vec<Arc<Change>>> {
        if let Some(first) = self.history.front() {
            if rv + 1 < first.rv && rv < self.rv {
                return None;
            }
        }
        Some(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    pub(crate) fn raw_get(&self, storage: &'static str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(storage, ns.to_string(), name.to_string()))
    }

    /// All stored objects of a storage, optionally in one namespace.
    pub(crate) fn raw_list(&self, storage: &'static str, ns: Option<&str>) -> Vec<&Value> {
        let range = match ns {
            Some(ns) => self.objects.range(
                (storage, ns.to_string(), String::new())
                    ..(storage, format!("{ns}\0"), String::new()),
            ),
            None => self.objects.range(
                (storage, String::new(), String::new())
                    ..(storage, "\u{10FFFF}".to_string(), String::new()),
            ),
        };
        range.map(|(_, v)| v).collect()
    }

    /// Every stored object, for scans such as finding owners by uid.
    pub(crate) fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    /// Writes an object as it stands (bumping its resourceVersion): used by
    /// the controllers, which act with full rights and no validation.
    pub(crate) fn raw_put(&mut self, storage: &'static str, mut obj: Value) -> Value {
        let ns = meta_str(&obj, "namespace").unwrap_or("").to_string();
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let key = (storage, ns.clone(), name);
        let existed = self.objects.contains_key(&key);
        if let Some(rt) = catalog::TYPES.iter().find(|t| t.storage == storage) {
            default_object(rt, &mut obj);
        }
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.insert(key, obj.clone());
        self.record(
            storage,
            if existed { "MODIFIED" } else { "ADDED" },
            obj.clone(),
        );
        obj
    }

    pub(crate) fn raw_remove(
        &mut self,
        storage: &'static str,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        let removed = self
            .objects
            .remove(&(storage, ns.to_string(), name.to_string()))?;
        let mut obj = removed.clone();
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        if let Some(uid) = meta_str(&removed, "uid") {
            self.terminating.remove(uid);
        }
        self.record(storage, "DELETED", obj.clone());
        Some(obj)
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.raw_get("namespaces", "", ns).is_some()
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.raw_get(rt.storage, ns, name)
            .map(|v| to_api(rt, v))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value, ApiError> {
        let labels = LabelSelector::parse(opts.label_selector.as_deref().unwrap_or(""))?;
        let fields = FieldSelector::parse(opts.field_selector.as_deref().unwrap_or(""), rt)?;
        let ns = ns.or(fields.required("metadata.namespace"));
        let start: Option<(String, String)> = match &opts.continue_token {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let mut items = Vec::new();
        let mut next: Option<(String, String)> = None;
        let mut remaining = 0usize;
        let candidates: Vec<&Value> = match fields.required("metadata.name") {
            Some(name) => match ns {
                Some(ns) => self.raw_get(rt.storage, ns, name).into_iter().collect(),
                None => self.raw_list(rt.storage, None),
            },
            None => self.raw_list(rt.storage, ns),
        };
        for obj in candidates {
            let key = (
                meta_str(obj, "namespace").unwrap_or("").to_string(),
                meta_str(obj, "name").unwrap_or("").to_string(),
            );
            if let Some(start) = &start {
                if &key <= start {
                    continue;
                }
            }
            if !labels.matches_object(obj) || !fields.matches(obj) {
                continue;
            }
            if let Some(limit) = opts.limit.filter(|l| *l > 0) {
                if items.len() >= limit {
                    remaining += 1;
                    continue;
                }
                if items.len() + 1 == limit {
                    next = Some(key.clone());
                }
            }
            items.push(to_api(rt, obj));
        }
        let mut metadata = json!({"resourceVersion": self.rv.to_string()});
        if remaining > 0 {
            if let Some(last) = next {
                metadata["continue"] = json!(encode_continue(self.rv, &last));
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Checks that the body names the kind of the endpoint.
    fn check_kind(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        let kind = obj["kind"].as_str().unwrap_or("");
        let api_version = obj["apiVersion"].as_str().unwrap_or("");
        if (!kind.is_empty() && kind != rt.kind)
            || (!api_version.is_empty() && api_version != rt.api_version())
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        Ok(())
    }

    /// POST. `manager` is recorded in managedFields as owning every field
    /// (None for seeding, which stores objects as given).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        obj: Value,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        Self::check_kind(rt, &obj)?;
        let mut obj = from_api(rt, &obj);
        let st = storage_type(rt);
        obj["kind"] = json!(st.kind);
        obj["apiVersion"] = json!(st.api_version());
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if rt.namespaced {
            match meta_str(&obj, "namespace") {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
            if !self.namespace_exists(ns) {
                return Err(ApiError::namespace_not_found(ns));
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let mut name = meta_str(&obj, "name").unwrap_or("").to_string();
        if name.is_empty() {
            match meta_str(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", random_suffix(5));
                    obj["metadata"]["name"] = json!(name);
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        &[(
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required".into(),
                        )],
                    ))
                }
            }
        }
        let key_ns = if rt.namespaced { ns } else { "" };
        if self.raw_get(st.storage, key_ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        for transient in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
        ] {
            meta.remove(transient);
        }
        if has_generation(st) {
            meta.insert("generation".into(), json!(1));
        }
        default_object(st, &mut obj);
        validate(st, &name, &obj, None)?;
        if let Some(manager) = manager {
            managed::record_update(st, None, &mut obj, manager, None);
        }
        let stored = if dry_run {
            obj
        } else {
            self.raw_put(st.storage, obj)
        };
        Ok(to_api(rt, &stored))
    }

    /// PUT: replaces the object (or, for `status`, only its status).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        Self::check_kind(rt, &obj)?;
        if let Some(body_name) = meta_str(&obj, "name") {
            if body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        let obj = from_api(rt, &obj);
        let st = storage_type(rt);
        let key_ns = if rt.namespaced { ns } else { "" };
        let Some(old) = self.raw_get(st.storage, key_ns, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(rv) = meta_str(&obj, "resourceVersion") {
            if !rv.is_empty() && Some(rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(rt, name));
            }
        }
        let new = merge_update(st, &old, obj, subresource);
        let tracking = manager.map(|m| (m, subresource));
        self.write_update(rt, st, name, &old, new, dry_run, tracking)
    }

    /// Stores an updated object; `tracking` names the manager (and
    /// subresource) to record as owning what changed.
    #[allow(clippy::too_many_arguments)]
    fn write_update(
        &mut self,
        rt: &ResourceType,
        st: &'static ResourceType,
        name: &str,
        old: &Value,
        mut new: Value,
        dry_run: bool,
        tracking: Option<(&str, Option<&str>)>,
    ) -> Result<Value, ApiError> {
        new["kind"] = json!(st.kind);
        new["apiVersion"] = json!(st.api_version());
        // The server owns identity and bookkeeping fields.
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        default_object(st, &mut new);
        if has_generation(st) && old.get("spec") != new.get("spec") {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        validate(st, name, &new, Some(old))?;
        match tracking {
            Some((manager, subresource)) => {
                managed::record_update(st, Some(old), &mut new, manager, subresource)
            }
            None if new["metadata"].get("managedFields").is_none() => {
                if let Some(m) = old["metadata"].get("managedFields") {
                    new["metadata"]["managedFields"] = m.clone();
                }
            }
            None => {}
        }
        // A write that changes nothing does not bump the resourceVersion.
        let mut unchanged = new.clone();
        unchanged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if &unchanged == old || dry_run {
            return Ok(to_api(rt, &unchanged));
        }
        // An object whose deletion only waited for finalizers goes once the
        // last one is removed.
        if new["metadata"]["deletionTimestamp"].is_string()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
            && st.plural != "pods"
        {
            let ns = meta_str(&new, "namespace").unwrap_or("").to_string();
            let removed = self.raw_remove(st.storage, &ns, name).unwrap_or(new);
            return Ok(to_api(rt, &removed));
        }
        let stored = self.raw_put(st.storage, new);
        Ok(to_api(rt, &stored))
    }

    /// PATCH. `field_manager` is the request's parameter (required for an
    /// apply); `manager` the one recorded, derived from it or the
    /// User-Agent.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        field_manager: Option<&str>,
        manager: &str,
        force: bool,
        subresource: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let st = storage_type(rt);
        let key_ns = if rt.namespaced { ns } else { "" };
        if kind == PatchKind::Apply {
            if field_manager.is_none_or(str::is_empty) {
                return Err(ApiError::invalid_options(
                    "fieldManager",
                    "FieldValueRequired",
                    "Required value: is required for apply patch",
                ));
            }
            let applied: Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if applied["apiVersion"].as_str() != Some(rt.api_version().as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Incorrect version specified in apply patch. Specified patch version: {}, expected: {}",
                    applied["apiVersion"].as_str().unwrap_or(""),
                    rt.api_version()
                )));
            }
            if applied["kind"].as_str() != Some(rt.kind) {
                return Err(ApiError::bad_request(format!(
                    "Incorrect kind specified in apply patch. Specified patch kind: {}, expected: {}",
                    applied["kind"].as_str().unwrap_or(""),
                    rt.kind
                )));
            }
            if let Some(applied_name) = meta_str(&applied, "name") {
                if applied_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                    )));
                }
            }
            let existing = self.raw_get(st.storage, key_ns, name).cloned();
            let current = existing.as_ref().map(|o| to_api(rt, o));
            let mut merged =
                managed::apply(rt, current.as_ref(), &applied, manager, force, subresource)?;
            return match existing {
                None => {
                    merged["metadata"]["name"] = json!(name);
                    self.create(rt, ns, merged, dry_run, None)
                }
                Some(old) => {
                    let mut new = merge_update(st, &old, from_api(rt, &merged), subresource);
                    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                    self.write_update(rt, st, name, &old, new, dry_run, None)
                }
            };
        }
        if force {
            return Err(ApiError::invalid_options(
                "force",
                "FieldValueForbidden",
                "Forbidden: may not be specified for non-apply patch",
            ));
        }
        let Some(old) = self.raw_get(st.storage, key_ns, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        let current = to_api(rt, &old);
        let patched = match kind {
            PatchKind::Json => {
                let ops: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                patch::json_patch(&current, &ops).map_err(|e| ApiError::new(422, "Invalid", e))?
            }
            PatchKind::Merge | PatchKind::Strategic => {
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                if !p.is_object() {
                    return Err(ApiError::bad_request(
                        "json: cannot unmarshal non-object into Go value of type map[string]interface {}",
                    ));
                }
                if let Some(rv) = p["metadata"]["resourceVersion"].as_str() {
                    if Some(rv) != meta_str(&old, "resourceVersion") {
                        return Err(ApiError::conflict(rt, name));
                    }
                }
                if kind == PatchKind::Merge {
                    patch::merge_patch(&current, &p)
                } else {
                    patch::strategic_merge_patch(&current, &p)
                        .map_err(|e| ApiError::new(422, "Invalid", e))?
                }
            }
            PatchKind::Apply => unreachable!("an apply returned above"),
        };
        if meta_str(&patched, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&patched, "name").unwrap_or("")
            )));
        }
        let mut new = merge_update(st, &old, from_api(rt, &patched), subresource);
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        self.write_update(
            rt,
            st,
            name,
            &old,
            new,
            dry_run,
            Some((manager, subresource)),
        )
    }

    /// DELETE of one object. Returns the HTTP answer body; graceful pod
    /// deletion, foreground deletion and garbage collection finish later in
    /// the controllers.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let st = storage_type(rt);
        let key_ns = if rt.namespaced { ns } else { "" };
        let Some(old) = self.raw_get(st.storage, key_ns, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        let uid = meta_str(&old, "uid").unwrap_or("").to_string();
        if let Some(want) = &opts.precondition_uid {
            if *want != uid {
                let mut e = ApiError::conflict(rt, name);
                e.message = format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {want}, UID in object meta: {uid}",
                    rt.qualified()
                );
                return Err(e);
            }
        }
        if let Some(want) = &opts.precondition_rv {
            let have = meta_str(&old, "resourceVersion").unwrap_or("");
            if want != have {
                let mut e = ApiError::conflict(rt, name);
                e.message = format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {have}",
                    rt.qualified()
                );
                return Err(e);
            }
        }
        if opts.dry_run {
            return Ok(to_api(rt, &old));
        }
        let already_deleting = old["metadata"]["deletionTimestamp"].is_string();
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        if !matches!(policy, "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::invalid(
                rt,
                name,
                &[("propagationPolicy", "FieldValueNotSupported", format!("Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""))],
            ));
        }
        if policy == "Orphan" {
            self.orphan_dependents(&uid);
        }
        // Pods on a node end gracefully: the kubelet confirms, then the
        // object goes. Without a node (or with grace 0) they go at once.
        if st.plural == "pods" {
            let node = old["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            let grace = opts.grace_period_seconds.unwrap_or(30);
            if !node.is_empty() && grace > 0 && !is_finished_pod(&old) {
                if already_deleting {
                    return Ok(old);
                }
                let mut obj = old.clone();
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                let stored = self.raw_put(st.storage, obj);
                self.terminating.insert(uid, std::time::Instant::now());
                return Ok(stored);
            }
        }
        if policy == "Foreground" && !already_deleting {
            let mut obj = old.clone();
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !finalizers.contains(&json!("foregroundDeletion")) {
                finalizers.push(json!("foregroundDeletion"));
            }
            obj["metadata"]["finalizers"] = Value::Array(finalizers);
            let stored = self.raw_put(st.storage, obj);
            return Ok(to_api(rt, &stored));
        }
        if old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            if already_deleting {
                return Ok(to_api(rt, &old));
            }
            let mut obj = old.clone();
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let stored = self.raw_put(st.storage, obj);
            return Ok(to_api(rt, &stored));
        }
        if st.plural == "namespaces" {
            self.delete_namespace_contents(name);
        }
        let removed = self.raw_remove(st.storage, key_ns, name).unwrap_or(old);
        if rt.returns_deleted_object {
            Ok(to_api(rt, &removed))
        } else {
            let mut details = json!({"name": name, "kind": rt.plural, "uid": uid});
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            Ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            )
        }
    }

    fn orphan_dependents(&mut self, owner_uid: &str) {
        let dependents: Vec<(&'static str, Value)> = self
            .objects
            .iter()
            .filter(|(_, v)| owner_uids(v).iter().any(|u| u == owner_uid))
            .map(|(k, v)| (k.0, v.clone()))
            .collect();
        for (storage, mut obj) in dependents {
            if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
                if refs.is_empty() {
                    obj["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("ownerReferences");
                }
            }
            self.raw_put(storage, obj);
        }
    }

    fn delete_namespace_contents(&mut self, ns: &str) {
        let keys: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, kns, _)| kns == ns)
            .cloned()
            .collect();
        for (storage, kns, name) in keys {
            self.raw_remove(storage, &kns, &name);
        }
    }

    /// Stores an object as given (create or replace), for seeding. Creates
    /// its namespace when missing.
    pub fn put(&mut self, obj: Value) -> Result<Value, ApiError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("");
        let kind = obj["kind"].as_str().unwrap_or("");
        let rt = catalog::by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("the simulator does not serve {api_version} {kind}"))
        })?;
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let ns = meta_str(&obj, "namespace").unwrap_or("default").to_string();
        if rt.namespaced && !self.namespace_exists(&ns) {
            let ns_type = catalog::by_kind("v1", "Namespace").expect("namespaces are served");
            self.create(ns_type, "", json!({"metadata": {"name": ns}}), false, None)?;
        }
        let st = storage_type(rt);
        let key_ns = if rt.namespaced { ns.as_str() } else { "" };
        match self.raw_get(st.storage, key_ns, &name).cloned() {
            None => self.create(rt, &ns, obj, false, None),
            Some(old) => {
                let mut obj = from_api(rt, &obj);
                // Seeds may set status and creation times (an old event, a
                // pod's phase); keep what they give.
                for field in ["uid", "creationTimestamp"] {
                    if obj["metadata"].get(field).is_none() {
                        obj["metadata"][field] = old["metadata"][field].clone();
                    }
                }
                obj["metadata"]["namespace"] = if rt.namespaced {
                    json!(ns)
                } else {
                    Value::Null
                };
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.retain(|_, v| !v.is_null());
                }
                default_object(st, &mut obj);
                let stored = self.raw_put(st.storage, obj);
                Ok(to_api(rt, &stored))
            }
        }
    }
}

fn is_finished_pod(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

/// The uids an object names as its owners.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has_generation(rt: &ResourceType) -> bool {
    matches!(
        rt.plural,
        "deployments" | "replicasets" | "statefulsets" | "ingresses" | "services"
    )
}

/// The object an update stores: for kinds with a status subresource the
/// main endpoint keeps the old status, and `/status` keeps everything else.
fn merge_update(
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    subresource: Option<&str>,
) -> Value {
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    if rt.has_status {
        match subresource {
            Some("status") => {
                let mut out = old.clone();
                out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                if out["status"].is_null() {
                    out.as_object_mut().unwrap().remove("status");
                }
                out["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
                return out;
            }
            _ => match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().unwrap().remove("status");
                }
            },
        }
    }
    new
}

/// Fills the defaults the real server's defaulting functions set for the
/// fields the doctor and kubectl read.
fn default_object(rt: &ResourceType, obj: &mut Value) {
    match rt.plural {
        "namespaces" => {
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            if obj["status"]["phase"].is_null() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        "deployments" => {
            let spec = &mut obj["spec"];
            if spec["replicas"].is_null() {
                spec["replicas"] = json!(1);
            }
            if spec["strategy"]["type"].is_null() {
                spec["strategy"]["type"] = json!("RollingUpdate");
            }
            if spec["strategy"]["type"] == "RollingUpdate" {
                let ru = &mut spec["strategy"]["rollingUpdate"];
                if ru["maxSurge"].is_null() {
                    ru["maxSurge"] = json!("25%");
                }
                if ru["maxUnavailable"].is_null() {
                    ru["maxUnavailable"] = json!("25%");
                }
            }
            if spec["revisionHistoryLimit"].is_null() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec["progressDeadlineSeconds"].is_null() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
        }
        "replicasets" | "statefulsets" if obj["spec"]["replicas"].is_null() => {
            obj["spec"]["replicas"] = json!(1);
        }
        "pods" => {
            let spec = &mut obj["spec"];
            if spec["restartPolicy"].is_null() {
                spec["restartPolicy"] = json!("Always");
            }
            if spec["schedulerName"].is_null() {
                spec["schedulerName"] = json!("default-scheduler");
            }
            if spec["serviceAccountName"].is_null() {
                spec["serviceAccountName"] = json!("default");
            }
            if obj["status"]["phase"].is_null() {
                obj["status"]["phase"] = json!("Pending");
            }
        }
        "secrets" => {
            if obj["type"].is_null() {
                obj["type"] = json!("Opaque");
            }
            if let Some(Value::Object(string_data)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                for (k, v) in string_data {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    obj["data"][k] = json!(encoded);
                }
            }
        }
        "services" => {
            if obj["spec"]["type"].is_null() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            if obj["spec"]["clusterIP"].is_null() {
                let mut rng = rand::rng();
                let ip = format!(
                    "10.96.{}.{}",
                    rng.random_range(0..255),
                    rng.random_range(1..255)
                );
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
        }
        "persistentvolumeclaims" if obj["status"]["phase"].is_null() => {
            let bound = obj["spec"]["volumeName"].is_string();
            obj["status"]["phase"] = json!(if bound { "Bound" } else { "Pending" });
            if bound {
                obj["status"]["accessModes"] = obj["spec"]["accessModes"].clone();
                obj["status"]["capacity"] = obj["spec"]["resources"]["requests"].clone();
            }
        }
        "persistentvolumes" if obj["status"]["phase"].is_null() => {
            let bound = obj["spec"]["claimRef"].is_object();
            obj["status"]["phase"] = json!(if bound { "Bound" } else { "Available" });
        }
        "events" if obj["type"].is_null() => {
            obj["type"] = json!("Normal");
        }
        _ => {}
    }
}

/// The validation rules that the doctor's repairs can run into.
fn validate(
    rt: &ResourceType,
    name: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if !is_dns_subdomain(name) && old.is_none() {
        return Err(ApiError::invalid(
            rt,
            name,
            &[("metadata.name", "FieldValueInvalid", format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ))],
        ));
    }
    if rt.plural == "deployments" {
        let strategy = &obj["spec"]["strategy"];
        if strategy["type"] == "Recreate" && !strategy["rollingUpdate"].is_null() {
            return Err(ApiError::invalid(
                rt,
                name,
                &[(
                    "spec.strategy.rollingUpdate",
                    "FieldValueForbidden",
                    "Forbidden: may not be specified when strategy `type` is 'Recreate'".into(),
                )],
            ));
        }
        if !matches!(
            strategy["type"].as_str(),
            Some("Recreate") | Some("RollingUpdate")
        ) {
            return Err(ApiError::invalid(
                rt,
                name,
                &[(
                    "spec.strategy.type",
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: {}: supported values: \"Recreate\", \"RollingUpdate\"",
                        strategy["type"]
                    ),
                )],
            ));
        }
        if let Some(old) = old {
            if old["spec"]["selector"] != obj["spec"]["selector"] {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[(
                        "spec.selector",
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: {}: field is immutable",
                            obj["spec"]["selector"]
                        ),
                    )],
                ));
            }
        }
    }
    Ok(())
}

fn encode_continue(rv: u64, last: &(String, String)) -> String {
    let start = if last.0.is_empty() {
        format!("{}\u{0}", last.1)
    } else {
        format!("{}/{}\u{0}", last.0, last.1)
    };
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid("malformed"))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(invalid("server does not recognize this encoded key"));
    }
    let start = v["start"]
        .as_str()
        .ok_or_else(|| invalid("missing start"))?;
    let start = start.trim_end_matches('\u{0}');
    Ok(match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    })
}
