//! Request bodies in Kubernetes' protobuf encoding
//! (`application/vnd.kubernetes.protobuf`), turned into the JSON the store
//! keeps.
//!
//! client-go's typed clients send protobuf for built-in kinds (kubectl's
//! `create namespace|secret|configmap|deployment|service|ingress|
//! serviceaccount`, Go operators), so a server that only reads JSON answers
//! them 415. The wire form is the 4-byte magic `k8s\0` and a
//! `runtime.Unknown` envelope naming apiVersion and kind, whose `raw` field
//! holds the object's message. The messages are decoded with the field table
//! in `schema` (generated from the k8s-pb and k8s-openapi crates), which
//! covers the stored kinds, everything they contain, and DeleteOptions.
//!
//! Answers stay JSON, which every such client also accepts; encoding
//! protobuf answers is not modelled.

mod schema;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8; 4] = b"k8s\0";

/// How a field's value is encoded.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    Str,
    /// base64 in JSON.
    Bytes,
    /// int32 and int64 alike: varints.
    Int,
    Bool,
    /// A nested message, by its OpenAPI definition name.
    Msg(&'static str),
    /// metav1.Time: seconds and nanos, RFC 3339 to the second in JSON.
    Time,
    /// metav1.MicroTime: RFC 3339 to the microsecond.
    MicroTime,
    IntOrString,
    Quantity,
    /// RawExtension and FieldsV1: JSON bytes.
    RawJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    One,
    Many,
    /// map<string, T>: repeated entries of key (1) and value (2).
    Map,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    tag: u32,
    /// Empty for an embedded Go struct, whose fields sit in the parent.
    json: &'static str,
    ty: Ty,
    shape: Shape,
    /// Go writes value fields to protobuf even when zero, so a zero usually
    /// means "unset" and is dropped; for these pointer fields it is kept.
    keep_zero: bool,
}

pub(super) const fn f(
    tag: u32,
    json: &'static str,
    ty: Ty,
    shape: Shape,
    keep_zero: bool,
) -> Field {
    Field {
        tag,
        json,
        ty,
        shape,
        keep_zero,
    }
}

/// A field's Go markers, which strategic merge patch, server-side apply and
/// the OpenAPI documents follow; empty strings where a marker is absent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Merge {
    /// `merge`, `retainKeys`, `merge,retainKeys`.
    pub strategy: &'static str,
    pub key: &'static str,
    /// `atomic`, `set` or `map`.
    pub list_type: &'static str,
    pub map_keys: &'static [&'static str],
    /// `atomic` for a map or struct replaced whole.
    pub map_type: &'static str,
}

/// The markers of field `json` of an OpenAPI definition.
#[cfg(test)]
fn merge_of(definition: &str, json: &str) -> Option<&'static Merge> {
    schema::MERGE
        .binary_search_by(|(d, f, _)| (*d, *f).cmp(&(definition, json)))
        .ok()
        .map(|i| &schema::MERGE[i].2)
}

/// Every field with markers: (definition, JSON name, markers).
pub(crate) fn merge_fields() -> impl Iterator<Item = (&'static str, &'static str, &'static Merge)> {
    schema::MERGE.iter().map(|(d, f, m)| (*d, *f, m))
}

fn fields_of(definition: &str) -> Option<&'static [Field]> {
    schema::MESSAGES
        .binary_search_by(|(name, _)| (*name).cmp(definition))
        .ok()
        .map(|i| schema::MESSAGES[i].1)
}

/// The OpenAPI definition of a served kind: `io.k8s.api.apps.v1.Deployment`.
pub fn definition_name(api_version: &str, kind: &str) -> String {
    if kind == "DeleteOptions" {
        return "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".into();
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g),
    };
    format!("io.k8s.api.{package}.{version}.{kind}")
}

/// Whether a Content-Type header names the Kubernetes protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().map(str::trim) == Some(CONTENT_TYPE)
}

/// Decodes a protobuf request body into the object's JSON form, with
/// apiVersion and kind from the envelope (or the endpoint's, when the
/// envelope names none).
pub fn decode_object(body: &[u8], api_version: &str, kind: &str) -> Result<Value, String> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        "the protobuf body does not start with the Kubernetes magic number k8s\\0".to_string()
    })?;
    let unknown = decode_message("io.k8s.apimachinery.pkg.runtime.Unknown", envelope)?;
    if let Some(encoding) = unknown.get("contentEncoding").and_then(Value::as_str) {
        return Err(format!(
            "the protobuf envelope names a content encoding ({encoding}) the server does not read"
        ));
    }
    if let Some(ct) = unknown.get("contentType").and_then(Value::as_str) {
        if ct != CONTENT_TYPE {
            return Err(format!(
                "the protobuf envelope holds {ct}, not {CONTENT_TYPE}"
            ));
        }
    }
    let type_meta = unknown.get("typeMeta");
    let field = |name: &str, default: &str| {
        type_meta
            .and_then(|t| t.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion", api_version), field("kind", kind));
    let raw = match unknown.get("raw").and_then(Value::as_str) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let definition = definition_name(&api_version, &kind);
    let mut obj = decode_message(&definition, &raw)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    out.append(&mut obj);
    Ok(Value::Object(out))
}

/// One field as it arrives on the wire.
enum Wire<'a> {
    Varint(u64),
    /// No field of the stored kinds is fixed-width: read to be refused.
    Fixed64,
    Fixed32,
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or("the protobuf body ends inside a varint")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("the protobuf body has a varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("the protobuf body ends inside a field")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| "a protobuf field number is too large")?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "a length is too large")?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            other => {
                return Err(format!(
                    "protobuf wire type {other} is not used by Kubernetes"
                ))
            }
        };
        Ok(Some((tag, wire)))
    }
}

/// Decodes one message into its JSON object.
fn decode_message(definition: &str, bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let fields = fields_of(definition)
        .ok_or_else(|| format!("the simulator does not decode {definition} from protobuf"))?;
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, wire)) = reader.next()? {
        let Some(field) = fields.iter().find(|f| f.tag == tag) else {
            return Err(format!(
                "field {tag} of {definition} is not in the simulator's protobuf table: send JSON, or regenerate the table"
            ));
        };
        let context = || format!("{definition}.{}", field.json);
        match field.shape {
            Shape::One => {
                let Some(value) =
                    decode_value(field.ty, wire).map_err(|e| format!("{}: {e}", context()))?
                else {
                    continue;
                };
                if field.json.is_empty() {
                    if let Value::Object(mut inner) = value {
                        out.append(&mut inner);
                    }
                } else if field.keep_zero || !is_zero(&value) {
                    out.insert(field.json.to_string(), value);
                }
            }
            Shape::Many => {
                let items = out
                    .entry(field.json.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = items else {
                    unreachable!("a repeated field is an array")
                };
                match (field.ty, wire) {
                    // Packed scalars: several varints in one field.
                    (Ty::Int | Ty::Bool, Wire::Bytes(packed)) => {
                        let mut r = Reader::new(packed);
                        while r.pos < packed.len() {
                            let v = r.varint()?;
                            items.push(scalar(field.ty, v));
                        }
                    }
                    (ty, wire) => {
                        let value = decode_value(ty, wire)
                            .map_err(|e| format!("{}: {e}", context()))?
                            .unwrap_or(Value::Null);
                        items.push(value);
                    }
                }
            }
            Shape::Map => {
                let Wire::Bytes(entry) = wire else {
                    return Err(format!(
                        "{}: a map entry is not length-delimited",
                        context()
                    ));
                };
                let mut key = String::new();
                let mut value = None;
                let mut r = Reader::new(entry);
                while let Some((t, w)) = r.next()? {
                    match (t, w) {
                        (1, Wire::Bytes(k)) => key = utf8(k)?,
                        (2, w) => value = decode_value(field.ty, w)?,
                        _ => return Err(format!("{}: a malformed map entry", context())),
                    }
                }
                let map = out
                    .entry(field.json.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value.unwrap_or_else(|| empty_value(field.ty)));
                }
            }
        }
    }
    Ok(out)
}

/// The JSON of a map value whose entry left it out (protobuf omits
/// defaults).
fn empty_value(ty: Ty) -> Value {
    match ty {
        Ty::Int => Value::from(0),
        Ty::Bool => Value::Bool(false),
        Ty::Msg(_) => Value::Object(Map::new()),
        _ => Value::String(String::new()),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

fn scalar(ty: Ty, v: u64) -> Value {
    match ty {
        Ty::Bool => Value::Bool(v != 0),
        // int32 and int64 negatives arrive sign-extended to 64 bits.
        _ => Value::from(v as i64),
    }
}

/// Decodes one value; None for a value JSON leaves out (a zero Time).
fn decode_value(ty: Ty, wire: Wire) -> Result<Option<Value>, String> {
    let mismatch = || "the wire type does not fit the field".to_string();
    Ok(Some(match (ty, wire) {
        (Ty::Int | Ty::Bool, Wire::Varint(v)) => scalar(ty, v),
        (Ty::Str, Wire::Bytes(b)) => Value::String(utf8(b)?),
        (Ty::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Msg(definition), Wire::Bytes(b)) => Value::Object(decode_message(definition, b)?),
        (Ty::Time | Ty::MicroTime, Wire::Bytes(b)) => {
            let (mut seconds, mut nanos) = (0i64, 0i64);
            let mut r = Reader::new(b);
            while let Some((tag, w)) = r.next()? {
                match (tag, w) {
                    (1, Wire::Varint(v)) => seconds = v as i64,
                    (2, Wire::Varint(v)) => nanos = v as i64,
                    _ => return Err("a malformed Time".into()),
                }
            }
            if seconds == 0 && nanos == 0 {
                return Ok(None);
            }
            let t = DateTime::<Utc>::from_timestamp(seconds, nanos as u32)
                .ok_or("a Time out of range")?;
            let format = if matches!(ty, Ty::Time) {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            };
            Value::String(t.format(format).to_string())
        }
        (Ty::IntOrString, Wire::Bytes(b)) => {
            let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
            let mut r = Reader::new(b);
            while let Some((tag, w)) = r.next()? {
                match (tag, w) {
                    (1, Wire::Varint(v)) => is_string = v == 1,
                    (2, Wire::Varint(v)) => int = v as i64,
                    (3, Wire::Bytes(s)) => string = utf8(s)?,
                    _ => return Err("a malformed IntOrString".into()),
                }
            }
            if is_string {
                Value::String(string)
            } else {
                Value::from(int)
            }
        }
        (Ty::Quantity, Wire::Bytes(b)) => {
            let mut out = String::new();
            let mut r = Reader::new(b);
            while let Some((tag, w)) = r.next()? {
                if let (1, Wire::Bytes(s)) = (tag, w) {
                    out = utf8(s)?;
                }
            }
            Value::String(out)
        }
        (Ty::RawJson, Wire::Bytes(b)) => {
            let mut raw: &[u8] = &[];
            let mut r = Reader::new(b);
            while let Some((tag, w)) = r.next()? {
                if let (1, Wire::Bytes(s)) = (tag, w) {
                    raw = s;
                }
            }
            if raw.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(raw)
                .map_err(|e| format!("embedded raw JSON does not parse: {e}"))?
        }
        _ => return Err(mismatch()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(tag: u32, body: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3 | 2, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    fn varint_field(tag: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3, out);
        varint(v, out);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut type_meta);
        bytes_field(2, kind.as_bytes(), &mut type_meta);
        let mut unknown = Vec::new();
        bytes_field(1, &type_meta, &mut unknown);
        bytes_field(2, raw, &mut unknown);
        let mut out = MAGIC.to_vec();
        out.extend(unknown);
        out
    }

    #[test]
    fn a_secret_decodes_with_labels_bytes_and_go_zero_values_dropped() {
        let mut meta = Vec::new();
        bytes_field(1, b"registry", &mut meta);
        bytes_field(2, b"", &mut meta);
        let mut label = Vec::new();
        bytes_field(1, b"app", &mut label);
        bytes_field(2, b"harbor", &mut label);
        bytes_field(11, &label, &mut meta);
        varint_field(7, 0, &mut meta);
        bytes_field(8, b"", &mut meta);
        let mut secret = Vec::new();
        bytes_field(1, &meta, &mut secret);
        let mut data = Vec::new();
        bytes_field(1, b"password", &mut data);
        bytes_field(2, &[0xff, 0x00], &mut data);
        bytes_field(2, &data, &mut secret);
        bytes_field(3, b"Opaque", &mut secret);
        varint_field(5, 0, &mut secret);
        let obj = decode_object(&envelope("v1", "Secret", &secret), "v1", "Secret").unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "registry", "labels": {"app": "harbor"}},
                   "data": {"password": "/wA="}, "type": "Opaque", "immutable": false})
        );
    }

    #[test]
    fn int_or_string_time_and_pointer_zero_replicas() {
        let mut port = Vec::new();
        varint_field(3, 80, &mut port);
        let mut target = Vec::new();
        varint_field(1, 1, &mut target);
        bytes_field(3, b"http", &mut target);
        bytes_field(4, &target, &mut port);
        let mut spec = Vec::new();
        bytes_field(1, &port, &mut spec);
        let mut service = Vec::new();
        bytes_field(2, &spec, &mut service);
        let obj = decode_object(&envelope("v1", "Service", &service), "v1", "Service").unwrap();
        assert_eq!(
            obj["spec"]["ports"],
            json!([{"port": 80, "targetPort": "http"}])
        );

        let mut time = Vec::new();
        varint_field(1, 1_700_000_000, &mut time);
        let mut meta = Vec::new();
        bytes_field(8, &time, &mut meta);
        let mut deployment_spec = Vec::new();
        varint_field(1, 0, &mut deployment_spec);
        let mut deployment = Vec::new();
        bytes_field(1, &meta, &mut deployment);
        bytes_field(2, &deployment_spec, &mut deployment);
        let obj = decode_object(&envelope("apps/v1", "Deployment", &deployment), "", "").unwrap();
        assert_eq!(obj["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(obj["spec"]["replicas"], 0, "a pointer's zero is kept");
    }

    #[test]
    fn an_unknown_field_is_refused_by_number() {
        let mut ns = Vec::new();
        varint_field(99, 1, &mut ns);
        let err = decode_object(&envelope("v1", "Namespace", &ns), "v1", "Namespace").unwrap_err();
        assert!(
            err.contains("field 99 of io.k8s.api.core.v1.Namespace"),
            "{err}"
        );
        assert!(decode_object(b"{}", "v1", "Namespace").is_err());
    }

    #[test]
    fn the_table_is_sorted_and_every_message_it_names_is_in_it() {
        let names: Vec<&str> = schema::MESSAGES.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let merge: Vec<(&str, &str)> = schema::MERGE.iter().map(|(d, f, _)| (*d, *f)).collect();
        let mut sorted_merge = merge.clone();
        sorted_merge.sort();
        assert_eq!(merge, sorted_merge);
        assert_eq!(
            merge_of("io.k8s.api.core.v1.PodSpec", "containers")
                .unwrap()
                .key,
            "name"
        );
        for (name, fields) in schema::MESSAGES {
            for field in *fields {
                if let Ty::Msg(inner) = field.ty {
                    assert!(fields_of(inner).is_some(), "{name} names {inner}");
                }
            }
        }
    }
}
