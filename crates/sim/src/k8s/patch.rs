//! Three of the PATCH flavours the API server accepts: JSON merge patch
//! (RFC 7386), strategic merge patch and JSON patch (RFC 6902); the fourth,
//! server-side apply, is in `managed`.
//!
//! Strategic merge patch needs the per-field list strategies that the real
//! server reads from the Go struct tags (`patchStrategy`, `patchMergeKey`);
//! `list_strategy` carries those for the fields of the kinds served here.

use serde_json::{Map, Value};

/// RFC 7386: maps merge, `null` deletes, everything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Map::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[derive(Debug, PartialEq)]
enum ListStrategy {
    Replace,
    MergeKey(&'static str),
    MergePrimitive,
}

/// How a strategic merge patch treats the list `field` found under `path`
/// (the map keys from the object's root; list positions are not included).
fn list_strategy(path: &[String], field: &str) -> ListStrategy {
    let parent = path.last().map(String::as_str).unwrap_or("");
    let in_container = path
        .iter()
        .any(|p| p == "containers" || p == "initContainers" || p == "ephemeralContainers");
    match field {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::MergeKey("name"),
        // A ServiceAccount's imagePullSecrets (at the object's root) is an
        // atomic list; only a pod spec's merges by name.
        "imagePullSecrets" if path.is_empty() => ListStrategy::Replace,
        "imagePullSecrets" | "env" | "volumes" | "resourceClaims" => ListStrategy::MergeKey("name"),
        "volumeMounts" => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeKey("devicePath"),
        "ports" if in_container => ListStrategy::MergeKey("containerPort"),
        "ports" if parent == "spec" => ListStrategy::MergeKey("port"),
        "ownerReferences" => ListStrategy::MergeKey("uid"),
        "finalizers" => ListStrategy::MergePrimitive,
        "conditions" => ListStrategy::MergeKey("type"),
        // ServiceAccount.secrets
        "secrets" if path.is_empty() => ListStrategy::MergeKey("name"),
        "hostAliases" => ListStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch to `original`. Errors are messages for a
/// 422/400 answer.
pub fn strategic_merge_patch(original: &Value, patch: &Value) -> Result<Value, String> {
    let mut path = Vec::new();
    match merge_map(original, patch, &mut path)? {
        Some(v) => Ok(v),
        None => Err("a strategic merge patch cannot delete the whole object".into()),
    }
}

/// Merges a patch map into an original value; `None` means the directive
/// `$patch: delete` removed it.
fn merge_map(
    original: &Value,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<Option<Value>, String> {
    let Some(p) = patch.as_object() else {
        return Ok(Some(patch.clone()));
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut out = p.clone();
            out.remove("$patch");
            return Ok(Some(strip_directives(&Value::Object(out))));
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("Unknown patch type: {other}")),
    }
    let mut out = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    let retain_keys: Option<Vec<String>> = match p.get("$retainKeys") {
        Some(Value::Array(keys)) => Some(
            keys.iter()
                .map(|k| {
                    k.as_str()
                        .map(str::to_string)
                        .ok_or("$retainKeys must be a list of strings")
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err("$retainKeys must be a list of strings".into()),
        None => None,
    };
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<Value> = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = out.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v) {
            (Some(orig @ Value::Object(_)), Value::Object(_)) => {
                path.push(k.clone());
                let r = merge_map(orig, v, path)?;
                path.pop();
                r
            }
            (orig, Value::Array(items)) => {
                let orig_items = match orig {
                    Some(Value::Array(o)) => o.clone(),
                    _ => Vec::new(),
                };
                Some(merge_list(&orig_items, items, path, k)?)
            }
            (_, Value::Object(_)) => {
                path.push(k.clone());
                let r = merge_map(&Value::Null, v, path)?;
                path.pop();
                r
            }
            (_, other) => Some(other.clone()),
        };
        match merged {
            Some(m) => {
                out.insert(k.clone(), m);
            }
            None => {
                out.remove(k);
            }
        }
    }
    if let Some(keys) = retain_keys {
        out.retain(|k, _| keys.contains(k));
    }
    Ok(Some(Value::Object(out)))
}

fn merge_list(
    original: &[Value],
    patch: &[Value],
    path: &mut Vec<String>,
    field: &str,
) -> Result<Value, String> {
    // A `{"$patch": "replace"}` element replaces the whole list with the
    // other elements of the patch.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let rest: Vec<Value> = patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        return Ok(Value::Array(rest));
    }
    match list_strategy(path, field) {
        ListStrategy::Replace => Ok(Value::Array(patch.iter().map(strip_directives).collect())),
        ListStrategy::MergePrimitive => {
            let mut out = original.to_vec();
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }
        ListStrategy::MergeKey(key) => {
            let mut out = original.to_vec();
            path.push(field.to_string());
            for item in patch {
                let Some(key_value) = item.get(key) else {
                    path.pop();
                    return Err(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    ));
                };
                let pos = out.iter().position(|o| o.get(key) == Some(key_value));
                let deleting = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, deleting) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => match merge_map(&out[i], item, path)? {
                        Some(m) => out[i] = m,
                        None => {
                            out.remove(i);
                        }
                    },
                    (None, false) => out.push(strip_directives(item)),
                }
            }
            path.pop();
            Ok(Value::Array(out))
        }
    }
}

/// Removes strategic-merge directives and null values from a value that is
/// stored as it stands (a new list element, a replaced map).
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn pointer_tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "invalid JSON pointer {pointer:?}: must start with '/'"
        ));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    pointer: &str,
) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in &tokens[..tokens.len() - 1] {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: \"{pointer}\": missing value"))?;
    }
    Ok(cur)
}

fn json_get(doc: &Value, pointer: &str) -> Result<Value, String> {
    doc.pointer(pointer)
        .cloned()
        .ok_or_else(|| format!("doc is missing path: \"{pointer}\": missing value"))
}

fn json_remove(doc: &mut Value, pointer: &str) -> Result<Value, String> {
    let tokens = pointer_tokens(pointer)?;
    if tokens.is_empty() {
        return Err("cannot remove the whole document".into());
    }
    let last = tokens.last().unwrap().clone();
    let parent = parent_mut(doc, &tokens, pointer)?;
    let missing = || format!("unable to remove nonexistent key: {last}: missing value");
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

fn json_add(doc: &mut Value, pointer: &str, value: Value, replace: bool) -> Result<(), String> {
    let tokens = pointer_tokens(pointer)?;
    if tokens.is_empty() {
        *doc = value;
        return Ok(());
    }
    let last = tokens.last().unwrap().clone();
    let parent = parent_mut(doc, &tokens, pointer)?;
    match parent {
        Value::Object(m) => {
            if replace && !m.contains_key(&last) {
                return Err(format!("replace operation does not apply: doc is missing key: {pointer}: missing value"));
            }
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if replace {
                let i: usize = last.parse().map_err(|_| format!("invalid index {last}"))?;
                let slot = a
                    .get_mut(i)
                    .ok_or_else(|| format!("replace operation does not apply: doc is missing key: {pointer}: missing value"))?;
                *slot = value;
            } else if last == "-" {
                a.push(value);
            } else {
                let i: usize = last.parse().map_err(|_| format!("invalid index {last}"))?;
                if i > a.len() {
                    return Err(format!(
                        "add operation does not apply: index {i} is out of bounds"
                    ));
                }
                a.insert(i, value);
            }
            Ok(())
        }
        _ => Err(format!("doc is missing path: \"{pointer}\": missing value")),
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let Some(ops) = ops.as_array() else {
        return Err("json: cannot unmarshal object into Go value of type jsonpatch.Patch".into());
    };
    let mut doc = doc.clone();
    for op in ops {
        let kind = op["op"].as_str().ok_or("missing op")?;
        let path = op["path"].as_str().ok_or("missing path")?;
        match kind {
            "add" => json_add(
                &mut doc,
                path,
                op.get("value").cloned().unwrap_or(Value::Null),
                false,
            )?,
            "replace" => json_add(
                &mut doc,
                path,
                op.get("value").cloned().unwrap_or(Value::Null),
                true,
            )?,
            "remove" => {
                json_remove(&mut doc, path)?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("missing from")?;
                let v = json_remove(&mut doc, from)?;
                json_add(&mut doc, path, v, false)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("missing from")?;
                let v = json_get(&doc, from)?;
                json_add(&mut doc, path, v, false)?;
            }
            "test" => {
                let have = json_get(&doc, path)?;
                if Some(&have) != op.get("value") {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retain_keys_clears_rolling_update() {
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = strategic_merge_patch(&orig, &patch).unwrap();
        assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
    }

    #[test]
    fn a_service_accounts_image_pull_secrets_are_replaced_whole() {
        // ServiceAccount.imagePullSecrets is +listType=atomic, unlike PodSpec's.
        let orig = json!({"imagePullSecrets": [{"name": "a"}, {"name": "b"}]});
        let patch = json!({"imagePullSecrets": [{"name": "c"}]});
        let out = strategic_merge_patch(&orig, &patch).unwrap();
        assert_eq!(out["imagePullSecrets"], json!([{"name": "c"}]));
    }

    #[test]
    fn lists_merge_by_key_and_delete() {
        let orig = json!({"spec": {"imagePullSecrets": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "1"}]}]}});
        let patch = json!({"spec": {"imagePullSecrets": [{"name": "c"}, {"name": "a", "$patch": "delete"}],
            "containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]}]}});
        let out = strategic_merge_patch(&orig, &patch).unwrap();
        assert_eq!(
            out["spec"]["imagePullSecrets"],
            json!([{"name": "b"}, {"name": "c"}])
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "x");
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"a": [1, 2], "b": {"c": 1}});
        let ops = json!([{"op": "add", "path": "/a/-", "value": 3},
            {"op": "remove", "path": "/b/c"}, {"op": "test", "path": "/a/0", "value": 1}]);
        assert_eq!(
            json_patch(&doc, &ops).unwrap(),
            json!({"a": [1, 2, 3], "b": {}})
        );
        let bad = json!([{"op": "test", "path": "/a/0", "value": 9}]);
        assert!(json_patch(&doc, &bad).is_err());
    }
}
