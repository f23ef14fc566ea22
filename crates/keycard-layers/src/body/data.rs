//! The data a body template renders from: the parsed body, `_tyk_meta` and `_tyk_context`.

use std::sync::Arc;

use http::{Extensions, HeaderMap, Uri};
use keycard_core::vars::Vars;
use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr, Serde, ValueKind};
use serde_json::{Map, Value as Json};

use super::rule::BodyFormat;
use crate::context::RequestVars;

/// The variable holding the session metadata.
pub(super) const META: &str = "_tyk_meta";
/// The variable holding the request context.
pub(super) const CONTEXT: &str = "_tyk_context";
/// The variable holding the whole parsed body (Go templates' `{{ . }}`).
pub(super) const BODY: &str = "_body";

/// XML deeper than this is refused (the conversion recurses once per level; serde_json stops
/// JSON at 128 levels too).
const MAX_XML_DEPTH: usize = 128;

/// Why a body cannot be rendered from.
pub(super) enum BodyError {
    /// Not valid JSON / XML.
    Invalid(String),
    /// Valid, but not the JSON object the rule requires ([`BodyRule::objects_only`](super::BodyRule::objects_only)).
    NotAnObject,
}

/// The body's template variables: a JSON object's entries, a JSON array as `array`, any other
/// JSON value as `value`, an XML document as `{root: ...}`, an empty body as none; and the whole
/// body as `_body` (`{}` when empty). Keys named like the reserved variables are dropped, at the
/// top level and from `_body` alike, so a client cannot pose as the session. With
/// `objects_only`, a non-empty body that is not a JSON object is refused.
pub(super) fn body_variables(
    format: BodyFormat,
    body: &[u8],
    objects_only: bool,
) -> Result<Vec<(Value, Value)>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        let empty = Value::from_pairs(Vec::<(Value, Value)>::new());
        return Ok(vec![(Value::from(BODY), empty)]);
    }
    let invalid = |e: &dyn std::fmt::Display| BodyError::Invalid(e.to_string());
    let value = match format {
        BodyFormat::Json => serde_json::from_slice::<Value>(body).map_err(|e| invalid(&e))?,
        BodyFormat::Xml => {
            let text = std::str::from_utf8(body).map_err(|e| invalid(&e))?;
            Value::from(Serde(xml_to_json(text).map_err(|e| invalid(&e))?))
        }
    };
    if objects_only && value.kind() != ValueKind::Map {
        return Err(BodyError::NotAnObject);
    }
    let (mut variables, whole) = match value.kind() {
        ValueKind::Map => {
            let keys = value.try_iter().map_err(|e| invalid(&e))?;
            let entries: Vec<(Value, Value)> = keys
                .filter(|key| !matches!(key.as_str(), Some(META | CONTEXT | BODY)))
                .map(|key| {
                    let item = value.get_item(&key).unwrap_or_default();
                    (key, item)
                })
                .collect();
            let whole = Value::from_pairs(entries.clone());
            (entries, whole)
        }
        ValueKind::Seq => (vec![(Value::from("array"), value.clone())], value),
        _ => (vec![(Value::from("value"), value.clone())], value),
    };
    variables.push((Value::from(BODY), whole));
    Ok(variables)
}

/// An XML document as JSON, the way Tyk's `mxj` maps it: `{root: element}`, where an element
/// without attributes or child elements is its text, and otherwise an object of attributes
/// (`-name`), children by tag name (repeated tags become an array) and non-blank text (`#text`).
/// Namespace prefixes are dropped (local names only). DTDs are refused (no entity expansion).
fn xml_to_json(text: &str) -> Result<Json, String> {
    let document = roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
    let root = document.root_element();
    let mut map = Map::new();
    map.insert(root.tag_name().name().to_owned(), element(root, 0)?);
    Ok(Json::Object(map))
}

fn element(node: roxmltree::Node<'_, '_>, depth: usize) -> Result<Json, String> {
    if depth > MAX_XML_DEPTH {
        return Err(format!("XML nested deeper than {MAX_XML_DEPTH} elements"));
    }
    let mut map = Map::new();
    for attribute in node.attributes() {
        map.insert(
            format!("-{}", attribute.name()),
            Json::String(attribute.value().to_owned()),
        );
    }
    let mut text = String::new();
    for child in node.children() {
        if child.is_element() {
            let value = element(child, depth + 1)?;
            match map.entry(child.tag_name().name()) {
                serde_json::map::Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                serde_json::map::Entry::Occupied(mut entry) => match entry.get_mut() {
                    Json::Array(items) => items.push(value),
                    first => *first = Json::Array(vec![first.take(), value]),
                },
            }
        } else if let Some(t) = child.text().filter(|_| child.is_text()) {
            text.push_str(t);
        }
    }
    let text = text.trim();
    if map.is_empty() {
        return Ok(Json::String(text.to_owned()));
    }
    if !text.is_empty() {
        map.insert("#text".to_owned(), Json::String(text.to_owned()));
    }
    Ok(Json::Object(map))
}

/// `_tyk_context`: the request's context variables, looked up by name when the template reads
/// them (`_tyk_context.path`, `_tyk_context.headers_X_Request_Id`, ...), exactly as
/// `$tyk_context.NAME` reads them in header templates. Not enumerable: a template cannot dump
/// every header (or the raw key, `token`) by iterating it.
#[derive(Debug)]
pub(super) struct ContextObject {
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
}

impl ContextObject {
    /// A snapshot of a request's context (the request moves on to the inner service).
    pub(super) fn capture(uri: &Uri, headers: &HeaderMap, extensions: &Extensions) -> Value {
        Value::from_object(Self {
            uri: uri.clone(),
            headers: headers.clone(),
            extensions: extensions.clone(),
        })
    }
}

impl Object for ContextObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let vars = RequestVars {
            metadata: None,
            uri: &self.uri,
            headers: &self.headers,
            extensions: &self.extensions,
        };
        vars.context(key.as_str()?)
            .map(|v| Value::from(v.into_owned()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(format: BodyFormat, body: &str) -> String {
        let Ok(pairs) = body_variables(format, body.as_bytes(), false) else {
            panic!("{body} does not parse");
        };
        Value::from_pairs(pairs).to_string()
    }

    #[test]
    fn json_shapes() {
        assert_eq!(
            vars(BodyFormat::Json, r#"{"a":1}"#),
            "{'_body': {'a': 1}, 'a': 1}"
        );
        assert_eq!(
            vars(BodyFormat::Json, "[1,2]"),
            "{'_body': [1, 2], 'array': [1, 2]}"
        );
        assert_eq!(vars(BodyFormat::Json, "7"), "{'_body': 7, 'value': 7}");
        assert_eq!(vars(BodyFormat::Json, " "), "{'_body': {}}");
        let spoof = br#"{"_tyk_meta":{"x":1},"_tyk_context":2,"_body":0,"k":3}"#;
        let Ok(pairs) = body_variables(BodyFormat::Json, spoof, false) else {
            panic!("the spoofing body parses");
        };
        assert_eq!(
            Value::from_pairs(pairs).to_string(),
            "{'_body': {'k': 3}, 'k': 3}",
            "reserved keys are dropped at the top level and from _body"
        );
        assert!(matches!(
            body_variables(BodyFormat::Json, b"{nope", false),
            Err(BodyError::Invalid(_))
        ));
        for shape in ["[1,2]", "\"x\"", "42", "null"] {
            assert!(matches!(
                body_variables(BodyFormat::Json, shape.as_bytes(), true),
                Err(BodyError::NotAnObject)
            ));
        }
        assert!(
            body_variables(BodyFormat::Json, b"", true).is_ok(),
            "empty is {{}}"
        );
    }

    #[test]
    fn xml_maps_like_mxj() {
        let xml = r#"<?xml version="1.0"?>
            <order id="7"><item>a</item><item sku="s">b</item><note/><total>12.5</total>
            text</order>"#;
        let value = xml_to_json(xml).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"order": {
                "-id": "7",
                "item": ["a", {"-sku": "s", "#text": "b"}],
                "note": "",
                "total": "12.5",
                "#text": "text"
            }})
        );
        assert!(xml_to_json("<a><b></a>").is_err());
        assert!(xml_to_json(r#"<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>"#).is_err());
    }
}
