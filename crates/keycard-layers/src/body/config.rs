//! The body rules' configuration: the builder, the compiled config and how a rule renders.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Value};

use crate::session::Session;

use super::data::{BodyError, CONTEXT, META, body_variables};
use super::decode::{DecodeError, decode};
use super::rule::{BodyRule, CompiledRule};
use crate::scope::Scope;

/// The default buffering limit: 1 MiB.
pub const DEFAULT_LIMIT: usize = 1024 * 1024;

/// The default fuel of one render: roughly the number of template instructions it may run.
pub const DEFAULT_FUEL: u64 = 100_000;

/// How deep templates may nest (`if`, `for`, filters calling back...) while rendering.
const RECURSION_LIMIT: usize = 100;

/// Which message the rules change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// A body rule that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyConfigError {
    /// The template does not parse.
    #[error("invalid template in body rule {rule}: {message}")]
    Template {
        /// The rule's position, from 0, in the order the rules were added.
        rule: usize,
        /// Why it does not parse (minijinja's message, with the line).
        message: String,
    },
    /// The template reads `_tyk_meta` but the rule does not enable session data.
    #[error(
        "body rule {rule} reads _tyk_meta but does not enable session data (BodyRule::session_data)"
    )]
    SessionDataDisabled {
        /// The rule's position, from 0.
        rule: usize,
    },
    /// The output content type is not a valid header value.
    #[error("invalid output content type {value:?} in body rule {rule}")]
    InvalidContentType {
        /// The rule's position, from 0.
        rule: usize,
        /// The value given.
        value: String,
    },
}

/// Builds a [`TransformBodyLayer`]: scoped body rules, a buffering limit and a fuel budget.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the layer"]
pub struct TransformBodyBuilder {
    side: Side,
    rules: Vec<(Scope, BodyRule)>,
    limit: usize,
    fuel: u64,
}

impl TransformBodyBuilder {
    pub(super) fn new(side: Side) -> Self {
        Self {
            side,
            rules: Vec::new(),
            limit: DEFAULT_LIMIT,
            fuel: DEFAULT_FUEL,
        }
    }

    /// Adds `rule` for requests in `scope` (use `Scope::path("*")` for every request). The first
    /// added rule that matches a message applies.
    pub fn rule(mut self, scope: Scope, rule: BodyRule) -> Self {
        self.rules.push((scope, rule));
        self
    }

    /// The most bytes buffered for one body, both as received and once decompressed (default
    /// [`DEFAULT_LIMIT`]).
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// The fuel of one render (default [`DEFAULT_FUEL`]); a render that runs out fails like any
    /// template runtime error.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// Compiles every template and checks every rule.
    pub fn build(self) -> Result<TransformBodyLayer, BodyConfigError> {
        let mut env = Environment::new();
        env.set_fuel(Some(self.fuel));
        env.set_recursion_limit(RECURSION_LIMIT);
        // Output is JSON or XML written by the template author; values print as they are (Tyk).
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let mut rules = Vec::with_capacity(self.rules.len());
        for (index, (scope, rule)) in self.rules.into_iter().enumerate() {
            let name = format!("body-rule-{index}");
            env.add_template_owned(name.clone(), rule.template)
                .map_err(|e| BodyConfigError::Template {
                    rule: index,
                    message: e.to_string(),
                })?;
            let used = env
                .get_template(&name)
                .map_err(|e| BodyConfigError::Template {
                    rule: index,
                    message: e.to_string(),
                })?
                .undeclared_variables(true);
            let reads = |variable: &str| {
                used.iter().any(|u| {
                    u.strip_prefix(variable)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
                })
            };
            if reads(META) && !rule.session_data {
                return Err(BodyConfigError::SessionDataDisabled { rule: index });
            }
            let output_content_type = rule
                .output_content_type
                .map(|value| {
                    HeaderValue::from_str(&value)
                        .map_err(|_| BodyConfigError::InvalidContentType { rule: index, value })
                })
                .transpose()?;
            rules.push(CompiledRule {
                scope,
                format: rule.format,
                name,
                session_data: rule.session_data,
                objects_only: rule.objects_only,
                uses_context: reads(CONTEXT),
                content_types: rule.content_types,
                output_content_type,
            });
        }
        Ok(TransformBodyLayer::new(Arc::new(Config {
            side: self.side,
            env,
            rules,
            limit: self.limit,
        })))
    }
}

/// A built rule set: what every service and future of one layer share.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) side: Side,
    pub(super) env: Environment<'static>,
    pub(super) rules: Vec<CompiledRule>,
    pub(super) limit: usize,
}

/// Why a selected body was not transformed.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Over the limit once decoded.
    TooLarge,
    /// A `content-encoding` this layer cannot undo.
    UnsupportedEncoding(String),
    /// Not valid JSON / XML, or not valid for its `content-encoding`.
    Invalid(String),
    /// Valid JSON, but not the object the rule requires.
    NotAnObject,
    /// The template failed while rendering (including running out of fuel).
    Render(minijinja::Error),
}

impl Config {
    /// Renders `rule` over a buffered body whose message has `headers`.
    pub(super) fn transform(
        &self,
        rule: &CompiledRule,
        headers: &HeaderMap,
        raw: Bytes,
        handle: Option<&Session>,
        context: Option<Value>,
    ) -> Result<Bytes, Refusal> {
        let body = decode(headers, raw, self.limit).map_err(|e| match e {
            DecodeError::TooLarge => Refusal::TooLarge,
            DecodeError::Unsupported(coding) => Refusal::UnsupportedEncoding(coding),
            DecodeError::Corrupt(why) => Refusal::Invalid(why),
        })?;
        let mut variables =
            body_variables(rule.format, &body, rule.objects_only).map_err(|e| match e {
                BodyError::Invalid(why) => Refusal::Invalid(why),
                BodyError::NotAnObject => Refusal::NotAnObject,
            })?;
        if rule.session_data {
            let meta = match handle {
                Some(handle) => handle.with_metadata(|metadata| Value::from(Serde(metadata))),
                None => Value::from_pairs(Vec::<(Value, Value)>::new()),
            };
            variables.push((Value::from(META), meta));
        }
        if let Some(context) = context {
            variables.push((Value::from(CONTEXT), context));
        }
        let template = self.env.get_template(&rule.name).map_err(Refusal::Render)?;
        let output = template
            .render(Value::from_pairs(variables))
            .map_err(Refusal::Render)?;
        Ok(Bytes::from(output))
    }
}

/// The headers of a message whose body became `length` bytes of `rule`'s output.
pub(super) fn set_body_headers(headers: &mut HeaderMap, rule: &CompiledRule, length: usize) {
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(content_type) = &rule.output_content_type {
        headers.insert(header::CONTENT_TYPE, content_type.clone());
    }
}

/// The headers of a HEAD response whose GET `rule` would transform: as [`set_body_headers`],
/// but without `content-length`, which only rendering the GET's body could tell (RFC 9110
/// §8.6 lets a HEAD response leave it out; a wrong one is what it forbids).
pub(super) fn set_head_headers(headers: &mut HeaderMap, rule: &CompiledRule) {
    set_body_headers(headers, rule, 0);
    headers.remove(header::CONTENT_LENGTH);
}

/// Statuses whose responses have no body to transform.
pub(super) fn has_no_body(status: StatusCode) -> bool {
    status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
}

/// Transforms bodies; built by [`TransformBodyBuilder`]. Its service is
/// [`TransformBody`](super::TransformBody).
#[derive(Clone, Debug)]
pub struct TransformBodyLayer {
    pub(super) config: Arc<Config>,
}

impl TransformBodyLayer {
    pub(super) fn new(config: Arc<Config>) -> Self {
        Self { config }
    }
}

impl TransformBodyLayer {
    /// Rules that rewrite the request body before it reaches the inner service.
    pub fn request() -> TransformBodyBuilder {
        TransformBodyBuilder::new(Side::Request)
    }

    /// Rules that rewrite the response body, rendered from the request's session and context.
    pub fn response() -> TransformBodyBuilder {
        TransformBodyBuilder::new(Side::Response)
    }

    /// Whether these rules change the request body (else the response body).
    pub fn is_request(&self) -> bool {
        self.config.side == Side::Request
    }
}
