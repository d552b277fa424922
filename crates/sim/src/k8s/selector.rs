//! Label and field selectors, parsed and matched the way the API server does.
//!
//! Label selectors support the whole grammar clients send (`=`, `==`, `!=`,
//! `in`, `notin`, `exists`, `!key`, `>`/`<`); field selectors support `=`,
//! `==`, `!=` on the fields each kind registers, and reject other fields with
//! the real server's 400 message.

use std::collections::BTreeMap;

use serde_json::Value;

use super::catalog::ResourceType;
use super::errors::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: LabelOp,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

fn parse_error(input: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: found '{input}', {why}"
    ))
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    /// A key or value: everything up to a delimiter or whitespace.
    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() {
            let c = self.s[self.pos];
            if c.is_ascii_whitespace()
                || matches!(c, b',' | b'=' | b'!' | b'(' | b')' | b'<' | b'>')
            {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "unable to parse requirement: <nil>: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )))
    }
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut lx = Lexer {
            s: input.as_bytes(),
            pos: 0,
        };
        let mut requirements = Vec::new();
        if lx.peek().is_none() {
            return Ok(Self::default());
        }
        loop {
            let req = if lx.eat("!") {
                let key = lx.word();
                validate_key(&key)?;
                Requirement {
                    key,
                    op: LabelOp::DoesNotExist,
                }
            } else {
                let key = lx.word();
                if key.is_empty() {
                    return Err(parse_error(input, "expected: identifier"));
                }
                validate_key(&key)?;
                let op = match lx.peek() {
                    None | Some(b',') => LabelOp::Exists,
                    Some(_) => {
                        if lx.eat("==") || lx.eat("=") {
                            LabelOp::Equals(lx.word())
                        } else if lx.eat("!=") {
                            LabelOp::NotEquals(lx.word())
                        } else if lx.eat(">") {
                            let v = lx.word();
                            LabelOp::GreaterThan(v.parse().map_err(|_| {
                                parse_error(&v, "for 'gt', 'lt' operators, exactly one value is required and it must be an integer")
                            })?)
                        } else if lx.eat("<") {
                            let v = lx.word();
                            LabelOp::LessThan(v.parse().map_err(|_| {
                                parse_error(&v, "for 'gt', 'lt' operators, exactly one value is required and it must be an integer")
                            })?)
                        } else {
                            let word = lx.word();
                            let set = match word.as_str() {
                                "in" | "notin" => {
                                    if !lx.eat("(") {
                                        return Err(parse_error(input, "expected: '('"));
                                    }
                                    let mut values = Vec::new();
                                    loop {
                                        values.push(lx.word());
                                        if lx.eat(",") {
                                            continue;
                                        }
                                        if lx.eat(")") {
                                            break;
                                        }
                                        return Err(parse_error(input, "expected: ',', or ')'"));
                                    }
                                    values
                                }
                                other => {
                                    return Err(parse_error(
                                        other,
                                        "expected: in, notin, =, ==, !=, gt, lt",
                                    ))
                                }
                            };
                            if word == "in" {
                                LabelOp::In(set)
                            } else {
                                LabelOp::NotIn(set)
                            }
                        }
                    }
                };
                Requirement { key, op }
            };
            requirements.push(req);
            match lx.peek() {
                None => break,
                Some(b',') => {
                    lx.eat(",");
                }
                Some(_) => return Err(parse_error(input, "expected: ',' or 'end of string'")),
            }
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = labels.get(&r.key);
            match &r.op {
                LabelOp::Equals(x) => v == Some(x),
                LabelOp::NotEquals(x) => v != Some(x),
                LabelOp::In(xs) => v.is_some_and(|v| xs.contains(v)),
                LabelOp::NotIn(xs) => !v.is_some_and(|v| xs.contains(v)),
                LabelOp::Exists => v.is_some(),
                LabelOp::DoesNotExist => v.is_none(),
                LabelOp::GreaterThan(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                LabelOp::LessThan(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.requirements.is_empty() || self.matches(&labels_of(obj))
    }
}

/// An object's labels as a map (empty when it has none).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed field selector.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    /// Parses `input` and checks every field against what `rt` supports.
    pub fn parse(input: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        if input.trim().is_empty() {
            return Ok(Self::default());
        }
        for part in split_unescaped(input, ',') {
            let (field, negate, value) = if let Some(i) = part.find("!=") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = part.find("==") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = part.find('=') {
                (&part[..i], false, &part[i + 1..])
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            let field = field.trim().to_string();
            let known = field == "metadata.name"
                || field == "metadata.namespace"
                || rt.extra_fields.contains(&field.as_str());
            if !known {
                let message = if rt.has_field_conversion {
                    format!("field label not supported: {field}")
                } else {
                    format!(
                        "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )
                };
                return Err(ApiError::bad_request(message));
            }
            terms.push((field, negate, unescape(value)));
        }
        Ok(Self { terms })
    }

    /// The value a term requires for `field` with `=`, when there is one:
    /// lets the store narrow a list to one namespace or name.
    pub fn required(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, negate, _)| f == field && !negate)
            .map(|(_, _, v)| v.as_str())
    }

    /// Matches an object stored in core form (events in core/v1 shape).
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, negate, want)| {
            let have = field_value(obj, field);
            (have == *want) != *negate
        })
    }
}

fn string_at(obj: &Value, path: &[&str]) -> String {
    let mut v = obj;
    for p in path {
        v = &v[*p];
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The value the server's field set gives `field` for `obj`.
fn field_value(obj: &Value, field: &str) -> String {
    match field {
        "name" => string_at(obj, &["metadata", "name"]),
        "source" => string_at(obj, &["source", "component"]),
        "spec.hostNetwork" | "spec.unschedulable" => {
            let path: Vec<&str> = field.split('.').collect();
            let v = string_at(obj, &path);
            if v.is_empty() {
                "false".into()
            } else {
                v
            }
        }
        "status.replicas" => {
            let v = string_at(obj, &["status", "replicas"]);
            if v.is_empty() {
                "0".into()
            } else {
                v
            }
        }
        "status.podIPs" => string_at(obj, &["status", "podIP"]),
        _ => {
            let path: Vec<&str> = field.split('.').collect();
            string_at(obj, &path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_grammar() {
        let l = labels(&[("app", "harbor"), ("component", "registry")]);
        let yes = [
            "app=harbor",
            "app==harbor,component=registry",
            "app!=other",
            "component in (registry, core)",
            "component notin (core)",
            "app",
            "!missing",
            "missing!=x",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "app=other",
            "component in (core)",
            "component notin (registry)",
            "missing",
            "!app",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        assert!(LabelSelector::parse("app in (a").is_err());
        assert!(LabelSelector::parse("app = x y").is_err());
    }
}
