//! Body rules as a user writes them, and their compiled form.

use http::{HeaderMap, HeaderValue, header};

use crate::scope::Scope;

/// How a rule reads the body it transforms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// JSON: an object's keys become top-level template variables, an array is `array`.
    #[default]
    Json,
    /// XML: the document is a map keyed by its root element (attributes `-name`, text `#text`).
    Xml,
}

impl BodyFormat {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Xml => "XML",
        }
    }
}

/// One body transform: a minijinja template and how to read the body it renders from.
///
/// ```
/// use keycard_layers::body::BodyRule;
///
/// let rule = BodyRule::json(r#"{"tenant": {{ _tyk_meta.tenant|tojson }}, "order": {{ order|tojson }}}"#)
///     .session_data()
///     .when_content_type("application/json");
/// # let _ = rule;
/// ```
#[derive(Clone, Debug)]
#[must_use = "pass the rule to TransformBodyBuilder::rule"]
pub struct BodyRule {
    pub(super) format: BodyFormat,
    pub(super) template: String,
    pub(super) session_data: bool,
    pub(super) objects_only: bool,
    pub(super) content_types: Vec<String>,
    pub(super) output_content_type: Option<String>,
}

impl BodyRule {
    /// A rule that reads the body as JSON and renders `template` (minijinja syntax).
    pub fn json(template: impl Into<String>) -> Self {
        Self::new(BodyFormat::Json, template.into())
    }

    /// A rule that reads the body as XML and renders `template` (minijinja syntax).
    pub fn xml(template: impl Into<String>) -> Self {
        Self::new(BodyFormat::Xml, template.into())
    }

    fn new(format: BodyFormat, template: String) -> Self {
        Self {
            format,
            template,
            session_data: false,
            objects_only: false,
            content_types: Vec::new(),
            output_content_type: None,
        }
    }

    /// Exposes the session's metadata to the template as `_tyk_meta` (Tyk's `enable_session`).
    /// A template that reads `_tyk_meta` without it is a build error.
    pub fn session_data(mut self) -> Self {
        self.session_data = true;
        self
    }

    /// Accepts only a JSON object (or an empty body, which renders as `{}`): a request body of
    /// another shape (`[1,2]`, `"x"`, `42`, `null`) is refused with 400
    /// `{"error":"Request body must be a JSON object"}` before the template runs, and a
    /// response body of another shape passes through untransformed. Use it for templates that
    /// iterate or merge the body's entries, so client input cannot make them fail with a 500.
    pub fn objects_only(mut self) -> Self {
        self.objects_only = true;
        self
    }

    /// Applies the rule only to bodies with this media type (`application/json`, or a whole
    /// type such as `text/*`; parameters like `charset` are ignored). Repeatable. Without any,
    /// the rule applies whatever the content type, including none.
    ///
    /// On the request side a filter lets a client skip the transform by labelling its body
    /// otherwise: do not filter a transform the upstream relies on (one that injects
    /// `tenant_id`, say).
    pub fn when_content_type(mut self, media_type: impl Into<String>) -> Self {
        self.content_types
            .push(media_type.into().trim().to_ascii_lowercase());
        self
    }

    /// The `content-type` of the transformed body (default: the original header, unchanged).
    pub fn output_content_type(mut self, value: impl Into<String>) -> Self {
        self.output_content_type = Some(value.into());
        self
    }
}

/// A rule with its template compiled into the layer's environment.
#[derive(Debug)]
pub(super) struct CompiledRule {
    pub(super) scope: Scope,
    pub(super) format: BodyFormat,
    /// The template's name in the layer's environment.
    pub(super) name: String,
    pub(super) session_data: bool,
    pub(super) objects_only: bool,
    /// Whether the template reads `_tyk_context` (the context is captured only then).
    pub(super) uses_context: bool,
    pub(super) content_types: Vec<String>,
    pub(super) output_content_type: Option<HeaderValue>,
}

impl CompiledRule {
    /// Whether the rule applies to a message with these headers.
    pub(super) fn accepts(&self, headers: &HeaderMap) -> bool {
        if self.content_types.is_empty() {
            return true;
        }
        let Some(essence) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
        else {
            return false;
        };
        self.content_types
            .iter()
            .any(|wanted| match wanted.strip_suffix("/*") {
                Some(kind) => essence
                    .split_once('/')
                    .is_some_and(|(actual, _)| actual == kind),
                None => *wanted == essence,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(types: &[&str]) -> CompiledRule {
        CompiledRule {
            scope: Scope::path("*"),
            format: BodyFormat::Json,
            name: "t".into(),
            session_data: false,
            objects_only: false,
            uses_context: false,
            content_types: types.iter().map(|t| t.to_string()).collect(),
            output_content_type: None,
        }
    }

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn content_type_filter_matches_the_essence() {
        let json = rule(&["application/json"]);
        assert!(json.accepts(&headers(Some("Application/JSON; charset=utf-8"))));
        assert!(!json.accepts(&headers(Some("application/problem+json"))));
        assert!(!json.accepts(&headers(None)));
        let text = rule(&["text/*"]);
        assert!(text.accepts(&headers(Some("text/xml"))));
        assert!(!text.accepts(&headers(Some("application/xml"))));
        assert!(rule(&[]).accepts(&headers(None)));
    }
}
