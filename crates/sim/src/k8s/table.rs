//! Server-side printing: the `meta.k8s.io/v1` Table that kubectl asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) when it prints
//! `kubectl get` output, with the columns the real server's printers use.

use chrono::Utc;
use serde_json::{json, Value};

use super::catalog::ResourceType;
use super::store::parse_time;

/// Kubernetes' short human durations ("5s", "3m20s", "2d4h").
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age(ts: &Value) -> String {
    match ts.as_str().and_then(parse_time) {
        Some(t) => human_duration((Utc::now() - t).num_seconds()),
        None => "<unknown>".into(),
    }
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": name, "priority": priority})
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

fn pod_status(pod: &Value) -> String {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating".into();
    }
    if let Some(statuses) = pod["status"]["containerStatuses"].as_array() {
        for cs in statuses {
            if let Some(reason) = cs["state"]["waiting"]["reason"].as_str() {
                return reason.into();
            }
            if let Some(reason) = cs["state"]["terminated"]["reason"].as_str() {
                return reason.into();
            }
        }
    }
    pod["status"]["phase"].as_str().unwrap_or("Unknown").into()
}

fn selector_string(sel: &Value) -> String {
    sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn containers(tpl_spec: &Value) -> (String, String) {
    let cs = tpl_spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (
        cs.iter()
            .filter_map(|c| c["name"].as_str())
            .collect::<Vec<_>>()
            .join(","),
        cs.iter()
            .filter_map(|c| c["image"].as_str())
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn num(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Column definitions and one row of cells per object.
fn columns_and_cells(rt: &ResourceType, obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let name = json!(obj["metadata"]["name"]);
    let created = &obj["metadata"]["creationTimestamp"];
    match (rt.group, rt.plural) {
        ("", "pods") => {
            let statuses = obj["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = obj["spec"]["containers"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|c| num(&c["restartCount"])).sum();
            (
                vec![
                    col("Name", "string", 0),
                    col("Ready", "string", 0),
                    col("Status", "string", 0),
                    col("Restarts", "string", 0),
                    col("Age", "string", 0),
                    col("IP", "string", 1),
                    col("Node", "string", 1),
                    col("Nominated Node", "string", 1),
                    col("Readiness Gates", "string", 1),
                ],
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(obj)),
                    json!(restarts.to_string()),
                    json!(age(created)),
                    json!(s(&obj["status"]["podIP"])),
                    json!(s(&obj["spec"]["nodeName"])),
                    json!("<none>"),
                    json!("<none>"),
                ],
            )
        }
        ("apps", "deployments") => {
            let (cn, im) = containers(&obj["spec"]["template"]["spec"]);
            (
                vec![
                    col("Name", "string", 0),
                    col("Ready", "string", 0),
                    col("Up-to-date", "integer", 0),
                    col("Available", "integer", 0),
                    col("Age", "string", 0),
                    col("Containers", "string", 1),
                    col("Images", "string", 1),
                    col("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        num(&obj["status"]["readyReplicas"]),
                        num(&obj["spec"]["replicas"])
                    )),
                    json!(num(&obj["status"]["updatedReplicas"])),
                    json!(num(&obj["status"]["availableReplicas"])),
                    json!(age(created)),
                    json!(cn),
                    json!(im),
                    json!(selector_string(&obj["spec"]["selector"])),
                ],
            )
        }
        ("apps", "replicasets") => {
            let (cn, im) = containers(&obj["spec"]["template"]["spec"]);
            (
                vec![
                    col("Name", "string", 0),
                    col("Desired", "integer", 0),
                    col("Current", "integer", 0),
                    col("Ready", "integer", 0),
                    col("Age", "string", 0),
                    col("Containers", "string", 1),
                    col("Images", "string", 1),
                    col("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(num(&obj["spec"]["replicas"])),
                    json!(num(&obj["status"]["replicas"])),
                    json!(num(&obj["status"]["readyReplicas"])),
                    json!(age(created)),
                    json!(cn),
                    json!(im),
                    json!(selector_string(&obj["spec"]["selector"])),
                ],
            )
        }
        ("apps", "statefulsets") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Age", "string", 0),
            ],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    num(&obj["status"]["readyReplicas"]),
                    num(&obj["spec"]["replicas"])
                )),
                json!(age(created)),
            ],
        ),
        ("", "nodes") => {
            let ready = obj["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = ready.to_string();
            if obj["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = obj["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/")
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    col("Name", "string", 0),
                    col("Status", "string", 0),
                    col("Roles", "string", 0),
                    col("Age", "string", 0),
                    col("Version", "string", 0),
                ],
                vec![
                    name,
                    json!(status),
                    json!(if roles.is_empty() {
                        "<none>".to_string()
                    } else {
                        roles.join(",")
                    }),
                    json!(age(created)),
                    json!(s(&obj["status"]["nodeInfo"]["kubeletVersion"])),
                ],
            )
        }
        ("", "namespaces") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            vec![name, json!(s(&obj["status"]["phase"])), json!(age(created))],
        ),
        ("", "events") => {
            let last = if obj["lastTimestamp"].is_string() {
                &obj["lastTimestamp"]
            } else {
                &obj["eventTime"]
            };
            let io = &obj["involvedObject"];
            (
                vec![
                    col("Last Seen", "string", 0),
                    col("Type", "string", 0),
                    col("Reason", "string", 0),
                    col("Object", "string", 0),
                    col("Subobject", "string", 1),
                    col("Source", "string", 1),
                    col("Message", "string", 0),
                    col("First Seen", "string", 1),
                    col("Count", "string", 1),
                    col("Name", "string", 1),
                ],
                vec![
                    json!(age(last)),
                    json!(s(&obj["type"])),
                    json!(s(&obj["reason"])),
                    json!(format!(
                        "{}/{}",
                        io["kind"].as_str().unwrap_or("").to_lowercase(),
                        io["name"].as_str().unwrap_or("")
                    )),
                    json!(io["fieldPath"].as_str().unwrap_or("")),
                    json!(s(&obj["source"]["component"])),
                    json!(s(&obj["message"])),
                    json!(age(&obj["firstTimestamp"])),
                    json!(num(&obj["count"]).max(1).to_string()),
                    name,
                ],
            )
        }
        ("", "secrets") => (
            vec![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Data", "string", 0),
                col("Age", "string", 0),
            ],
            vec![
                name,
                json!(s(&obj["type"])),
                json!(obj["data"]
                    .as_object()
                    .map(|m| m.len())
                    .unwrap_or(0)
                    .to_string()),
                json!(age(created)),
            ],
        ),
        ("", "configmaps") => (
            vec![
                col("Name", "string", 0),
                col("Data", "string", 0),
                col("Age", "string", 0),
            ],
            vec![
                name,
                json!(obj["data"]
                    .as_object()
                    .map(|m| m.len())
                    .unwrap_or(0)
                    .to_string()),
                json!(age(created)),
            ],
        ),
        ("", "services") => {
            let ports = obj["spec"]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                num(&p["port"]),
                                p["protocol"].as_str().unwrap_or("TCP")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            (
                vec![
                    col("Name", "string", 0),
                    col("Type", "string", 0),
                    col("Cluster-IP", "string", 0),
                    col("External-IP", "string", 0),
                    col("Port(s)", "string", 0),
                    col("Age", "string", 0),
                    col("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(s(&obj["spec"]["type"])),
                    json!(s(&obj["spec"]["clusterIP"])),
                    json!("<none>"),
                    json!(ports),
                    json!(age(created)),
                    json!(selector_string(
                        &json!({"matchLabels": obj["spec"]["selector"]})
                    )),
                ],
            )
        }
        ("", "persistentvolumeclaims") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Volume", "string", 0),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("StorageClass", "string", 0),
                col("VolumeAttributesClass", "string", 0),
                col("Age", "string", 0),
                col("VolumeMode", "string", 1),
            ],
            vec![
                name,
                json!(s(&obj["status"]["phase"])),
                json!(obj["spec"]["volumeName"].as_str().unwrap_or("")),
                json!(obj["status"]["capacity"]["storage"].as_str().unwrap_or("")),
                json!(access_modes(&obj["status"]["accessModes"])),
                json!(s(&obj["spec"]["storageClassName"])),
                json!("<unset>"),
                json!(age(created)),
                json!(obj["spec"]["volumeMode"].as_str().unwrap_or("Filesystem")),
            ],
        ),
        ("", "persistentvolumes") => {
            let claim = &obj["spec"]["claimRef"];
            (
                vec![
                    col("Name", "string", 0),
                    col("Capacity", "string", 0),
                    col("Access Modes", "string", 0),
                    col("Reclaim Policy", "string", 0),
                    col("Status", "string", 0),
                    col("Claim", "string", 0),
                    col("StorageClass", "string", 0),
                    col("VolumeAttributesClass", "string", 0),
                    col("Reason", "string", 0),
                    col("Age", "string", 0),
                ],
                vec![
                    name,
                    json!(obj["spec"]["capacity"]["storage"].as_str().unwrap_or("")),
                    json!(access_modes(&obj["spec"]["accessModes"])),
                    json!(obj["spec"]["persistentVolumeReclaimPolicy"]
                        .as_str()
                        .unwrap_or("Delete")),
                    json!(s(&obj["status"]["phase"])),
                    json!(if claim.is_object() {
                        format!(
                            "{}/{}",
                            claim["namespace"].as_str().unwrap_or(""),
                            claim["name"].as_str().unwrap_or("")
                        )
                    } else {
                        String::new()
                    }),
                    json!(obj["spec"]["storageClassName"].as_str().unwrap_or("")),
                    json!("<unset>"),
                    json!(obj["status"]["reason"].as_str().unwrap_or("")),
                    json!(age(created)),
                ],
            )
        }
        ("networking.k8s.io", "ingresses") => {
            let hosts = obj["spec"]["rules"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r["host"].as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "*".into());
            let ports = if obj["spec"]["tls"].is_array() {
                "80, 443"
            } else {
                "80"
            };
            (
                vec![
                    col("Name", "string", 0),
                    col("Class", "string", 0),
                    col("Hosts", "string", 0),
                    col("Address", "string", 0),
                    col("Ports", "string", 0),
                    col("Age", "string", 0),
                ],
                vec![
                    name,
                    json!(s(&obj["spec"]["ingressClassName"])),
                    json!(hosts),
                    json!(""),
                    json!(ports),
                    json!(age(created)),
                ],
            )
        }
        ("storage.k8s.io", "volumeattachments") => (
            vec![
                col("Name", "string", 0),
                col("Attacher", "string", 0),
                col("PV", "string", 0),
                col("Node", "string", 0),
                col("Attached", "boolean", 0),
                col("Age", "string", 0),
            ],
            vec![
                name,
                json!(s(&obj["spec"]["attacher"])),
                json!(s(&obj["spec"]["source"]["persistentVolumeName"])),
                json!(s(&obj["spec"]["nodeName"])),
                json!(obj["status"]["attached"].as_bool().unwrap_or(false)),
                json!(age(created)),
            ],
        ),
        ("events.k8s.io", _) => (
            vec![col("Name", "string", 0), col("Created At", "date", 0)],
            vec![name, created.clone()],
        ),
        _ => (
            vec![col("Name", "string", 0), col("Created At", "date", 0)],
            vec![name, created.clone()],
        ),
    }
}

fn access_modes(v: &Value) -> String {
    let modes: Vec<&str> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| match m.as_str() {
                    Some("ReadWriteOnce") => Some("RWO"),
                    Some("ReadOnlyMany") => Some("ROX"),
                    Some("ReadWriteMany") => Some("RWX"),
                    Some("ReadWriteOncePod") => Some("RWOP"),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    modes.join(",")
}

fn row_object(obj: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }),
    }
}

/// A Table for a list response (`items`) or a single object.
pub fn to_table(rt: &ResourceType, body: &Value, include_object: &str) -> Value {
    let items: Vec<Value> = match body["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![body.clone()],
    };
    let sample = items
        .first()
        .cloned()
        .unwrap_or_else(|| json!({"metadata": {}}));
    let (columns, _) = columns_and_cells(rt, &sample);
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let (_, cells) = columns_and_cells(rt, obj);
            json!({"cells": cells, "object": row_object(obj, include_object)})
        })
        .collect();
    let mut metadata = json!({});
    if body["items"].is_array() {
        metadata = body["metadata"].clone();
    } else if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
        metadata = json!({"resourceVersion": rv});
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }
}
