//! The rules as a user writes them (builders, and serde with Tyk's field names) and their
//! compiled form.

use std::collections::BTreeMap;

use http::Method;
use http::header::HeaderName;
use keycard_core::session::null_as_default;
use keycard_core::vars::{Template, TemplateError};
use regex::Regex;
use serde::Deserialize;

/// One URL rewrite rule: a `match_pattern` regex and the `rewrite_to` template used when it
/// matches, plus optional [`Trigger`]s that supply their own `rewrite_to`.
///
/// Deserialises from Tyk's `url_rewrites[]` entries: `path`, `method` (empty: any method),
/// `match_pattern`, `rewrite_to`, `triggers` and `disabled`; other fields are ignored.
///
/// # The endpoint: `path` and `method`
/// In Tyk a `url_rewrites` entry belongs to an endpoint: the first entry whose `method` and
/// `path` fit the request takes it, and its `match_pattern` then decides whether it is
/// rewritten; later entries are not consulted even when that pattern does not match. A rule
/// with a [`path`](Self::path) does the same here. `path` is Tyk's endpoint path: `{name}` is
/// one segment (`[^/]+`), `/*` any rest, anything else a regex, unanchored, matched against the
/// request path (not the query), case-sensitively unless the layer is built with
/// [`ignore_endpoint_case`](super::UrlRewriteBuilder::ignore_endpoint_case) (Tyk's gateway
/// option of that name; `match_pattern` stays case-sensitive either way, as in Tyk). A rule
/// without a `path` is tried on its `match_pattern` alone, and when that does not match the
/// next rule is tried.
///
/// ```
/// use keycard_layers::rewrite::{RewriteRule, Trigger};
///
/// let rule = RewriteRule::new(r"^/orders/(.*)", "/shards/$tyk_meta.shard/orders/$1")
///     .trigger(Trigger::any().header("X-Beta", "^on$").rewrite_to("/beta/orders/$1"));
///
/// let from_tyk: RewriteRule = serde_json::from_str(r#"{
///     "path": "/orders/{rest}",
///     "method": "GET",
///     "match_pattern": "^/orders/(.*)",
///     "rewrite_to": "/shards/$tyk_meta.shard/orders/$1",
///     "triggers": [{
///         "on": "any",
///         "options": {"header_matches": {"X-Beta": {"match_rx": "^on$", "reverse": false}}},
///         "rewrite_to": "/beta/orders/$1"
///     }]
/// }"#)?;
/// assert_eq!(from_tyk.match_pattern(), rule.match_pattern());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[must_use = "a rule does nothing until it is added to UrlRewriteLayer::rules()"]
pub struct RewriteRule {
    #[serde(default, deserialize_with = "null_as_default")]
    path: String,
    match_pattern: String,
    rewrite_to: String,
    #[serde(default, deserialize_with = "null_as_default")]
    triggers: Vec<Trigger>,
    #[serde(default, deserialize_with = "null_as_default")]
    method: String,
    #[serde(default)]
    disabled: bool,
}

impl RewriteRule {
    /// A rule rewriting requests whose path and query (`/path?query`, as the request has
    /// them) match the regex `match_pattern` to the template `rewrite_to` (`$N` groups,
    /// `$tyk_meta.KEY`, `$tyk_context.NAME`).
    pub fn new(match_pattern: impl Into<String>, rewrite_to: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            match_pattern: match_pattern.into(),
            rewrite_to: rewrite_to.into(),
            triggers: Vec::new(),
            method: String::new(),
            disabled: false,
        }
    }

    /// Adds a trigger. Triggers are tried in the order added; the first that fires supplies
    /// the target instead of the rule's own `rewrite_to`.
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.triggers.push(trigger);
        self
    }

    /// Applies the rule to requests with this method only (default: any method).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method.as_str().to_owned();
        self
    }

    /// Ties the rule to Tyk's endpoint `path` (`/orders/{id}`, `/orders/*`, or a regex): the
    /// first rule whose method and path fit a request takes it, rewritten or not (see
    /// [The endpoint](Self#the-endpoint-path-and-method)). Empty: no endpoint (the default).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The rule's endpoint path, as written (empty: none).
    pub fn endpoint_path(&self) -> &str {
        &self.path
    }

    /// The rule's regex, as written.
    pub fn match_pattern(&self) -> &str {
        &self.match_pattern
    }

    /// The rule's target template, as written.
    pub fn rewrite_to(&self) -> &str {
        &self.rewrite_to
    }

    /// Whether the rule is switched off (Tyk's `disabled`); disabled rules are skipped at build.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }
}

/// When a trigger fires: on any of its option groups firing, or only on all of them (Tyk's
/// `on`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerOn {
    /// The first option group that fires fires the trigger (Tyk's `any`); later groups are not
    /// evaluated, so they publish no context values.
    #[default]
    Any,
    /// Every option group must fire (Tyk's `all`); each of them publishes its values.
    All,
}

/// A conditional target for a [`RewriteRule`]: option groups matched against the request and
/// the `rewrite_to` used when they fire.
///
/// Within a group (say `header_matches`) each entry names a value to test; the group fires when
/// any entry matches (`on: any`) or every entry matches (`on: all`). Matches publish context
/// values (see the [module docs](super#trigger-context-values)), readable as
/// `$tyk_context.trigger-<n>-...` in this trigger's `rewrite_to` and in later layers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[must_use = "a trigger does nothing until it is added to a RewriteRule"]
pub struct Trigger {
    #[serde(default)]
    on: TriggerOn,
    #[serde(default)]
    options: TriggerOptions,
    #[serde(default)]
    rewrite_to: String,
}

/// The option groups of a [`Trigger`], with Tyk's field names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
struct TriggerOptions {
    #[serde(default, deserialize_with = "null_as_default")]
    header_matches: BTreeMap<String, RegexMatch>,
    #[serde(default, deserialize_with = "null_as_default")]
    query_val_matches: BTreeMap<String, RegexMatch>,
    #[serde(default, deserialize_with = "null_as_default")]
    path_part_matches: BTreeMap<String, RegexMatch>,
    #[serde(default, deserialize_with = "null_as_default")]
    session_meta_matches: BTreeMap<String, RegexMatch>,
    #[serde(default, deserialize_with = "null_as_default")]
    request_context_matches: BTreeMap<String, RegexMatch>,
    /// Tyk exports `{"match_rx": ""}` for "no payload match"; an empty regex means none here too.
    #[serde(default)]
    payload_matches: Option<RegexMatch>,
}

impl Trigger {
    /// A trigger that fires when any of its option groups fires.
    pub fn any() -> Self {
        Self::default()
    }

    /// A trigger that fires only when all of its option groups fire.
    pub fn all() -> Self {
        Self {
            on: TriggerOn::All,
            ..Self::default()
        }
    }

    /// The target template used when the trigger fires (`$N` groups of the rule's
    /// `match_pattern`, `$tyk_meta.KEY`, `$tyk_context.NAME` including this trigger's values).
    pub fn rewrite_to(mut self, template: impl Into<String>) -> Self {
        self.rewrite_to = template.into();
        self
    }

    /// `header_matches`: a value of header `name` matches. Context values
    /// `trigger-<n>-<Header-Name>-<i>[-<g>]`, the name in canonical case (`x-test` →
    /// `X-Test`), `i` the index among the header's values.
    pub fn header(mut self, name: impl Into<String>, matches: impl Into<RegexMatch>) -> Self {
        self.options
            .header_matches
            .insert(name.into(), matches.into());
        self
    }

    /// `query_val_matches`: a value of query parameter `name` (decoded) matches. Context
    /// values `trigger-<n>-<name>-<i>[-<g>]`, `i` the index among the parameter's values.
    pub fn query(mut self, name: impl Into<String>, matches: impl Into<RegexMatch>) -> Self {
        self.options
            .query_val_matches
            .insert(name.into(), matches.into());
        self
    }

    /// `path_part_matches`: a segment of the path (as the request has it) matches. `name` only
    /// names the context values `trigger-<n>-<name>-<i>[-<g>]`, `i` counting the matching
    /// segments.
    pub fn path_part(mut self, name: impl Into<String>, matches: impl Into<RegexMatch>) -> Self {
        self.options
            .path_part_matches
            .insert(name.into(), matches.into());
        self
    }

    /// `session_meta_matches`: the session metadata entry `key` is a string and matches.
    /// Context values `trigger-<n>-<key>[-<g>]`.
    pub fn session_meta(mut self, key: impl Into<String>, matches: impl Into<RegexMatch>) -> Self {
        self.options
            .session_meta_matches
            .insert(key.into(), matches.into());
        self
    }

    /// `request_context_matches`: the context value `name` (what `$tyk_context.NAME` reads)
    /// matches. Context values `trigger-<n>-<name>[-<g>]`.
    pub fn context(mut self, name: impl Into<String>, matches: impl Into<RegexMatch>) -> Self {
        self.options
            .request_context_matches
            .insert(name.into(), matches.into());
        self
    }

    /// `payload_matches`: the request body matches (the body is buffered, within the layer's
    /// body limit, and passed on unchanged). Context values `trigger-<n>-payload` (the first
    /// match) and `trigger-<n>-payload-<i>[-<g>]` for every match `i`.
    pub fn payload(mut self, matches: impl Into<RegexMatch>) -> Self {
        self.options.payload_matches = Some(matches.into());
        self
    }
}

/// A regex to match a value against (Tyk's `{"match_rx": ..., "reverse": ...}`).
///
/// `RegexMatch::from(r"hello-(\w+)")` matches values the regex finds a match in (unanchored:
/// use `^...$` for whole values). [`reverse`](Self::reverse) inverts it: a value that is present
/// but does *not* match fires, and publishes no context values (nothing was captured).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RegexMatch {
    match_rx: String,
    #[serde(default)]
    reverse: bool,
}

impl RegexMatch {
    /// Matches values in which `regex` finds a match.
    pub fn new(regex: impl Into<String>) -> Self {
        Self {
            match_rx: regex.into(),
            reverse: false,
        }
    }

    /// Inverts the match: present values that do not match fire.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }
}

impl From<&str> for RegexMatch {
    fn from(regex: &str) -> Self {
        Self::new(regex)
    }
}

impl From<String> for RegexMatch {
    fn from(regex: String) -> Self {
        Self::new(regex)
    }
}

/// A rule that cannot be built. `at` says where, e.g. `rule 0 match_pattern` or
/// `rule 1 trigger 0 header_matches["X-Test"]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteConfigError {
    /// A regex does not compile (the message is the regex engine's).
    #[error("invalid regex at {at}: {message}")]
    Regex {
        /// Where the regex is.
        at: String,
        /// Why it does not compile.
        message: String,
    },
    /// A `rewrite_to` template does not parse.
    #[error("invalid rewrite_to at {at}: {source}")]
    Template {
        /// Where the template is.
        at: String,
        /// Why it does not parse.
        #[source]
        source: TemplateError,
    },
    /// A target with a scheme other than `http` or `https`.
    #[error("unsupported scheme {scheme:?} in rewrite_to at {at}: only http and https targets")]
    Scheme {
        /// Where the template is.
        at: String,
        /// The scheme written.
        scheme: String,
    },
    /// A rule's `method` is not an HTTP method.
    #[error("invalid method {method:?} in rule {rule}")]
    Method {
        /// The rule's index.
        rule: usize,
        /// The method written.
        method: String,
    },
    /// A header name in `header_matches` is not a valid header name.
    #[error("invalid header name {name:?} at {at}")]
    HeaderName {
        /// Where the name is.
        at: String,
        /// The name written.
        name: String,
    },
    /// An absolute target (`http://host/...`) in a layer with no allowed hosts: every absolute
    /// target needs [`UrlRewriteBuilder::allow_hosts`](super::UrlRewriteBuilder::allow_hosts).
    #[error(
        "{at} is an absolute URL but no host is allowed: list every host it may reach with \
         allow_hosts([\"host\", \"host:port\"])"
    )]
    AllowListRequired {
        /// Where the template is.
        at: String,
    },
    /// An [`allow_hosts`](super::UrlRewriteBuilder::allow_hosts) entry that is not `host` or
    /// `host:port`.
    #[error("invalid allow_hosts entry {entry:?}: expected host or host:port (port 1-65535)")]
    AllowedHost {
        /// The entry written.
        entry: String,
    },
    /// A trigger without any match option can never fire usefully (Tyk fires an empty `all`
    /// trigger on every request); refused rather than guessed.
    #[error("{at} has no match options")]
    EmptyTrigger {
        /// Which trigger.
        at: String,
    },
}

/// A compiled rule.
#[derive(Debug)]
pub(super) struct CompiledRule {
    /// Tyk's endpoint `path`, as a regex; `None` when the rule has none.
    pub(super) path: Option<Regex>,
    pub(super) regex: Regex,
    pub(super) method: Option<Method>,
    pub(super) target: Target,
    pub(super) triggers: Vec<CompiledTrigger>,
}

impl CompiledRule {
    pub(super) fn compile(
        index: usize,
        rule: &RewriteRule,
        ignore_endpoint_case: bool,
    ) -> Result<Self, RewriteConfigError> {
        let at = format!("rule {index}");
        let path = match rule.path.as_str() {
            "" => None,
            path => Some(regex(
                &format!("{at} path"),
                &endpoint_pattern(path, ignore_endpoint_case),
            )?),
        };
        let method = match rule.method.as_str() {
            "" => None,
            method => Some(Method::from_bytes(method.as_bytes()).map_err(|_| {
                RewriteConfigError::Method {
                    rule: index,
                    method: method.to_owned(),
                }
            })?),
        };
        let triggers = rule
            .triggers
            .iter()
            .enumerate()
            .map(|(n, trigger)| CompiledTrigger::compile(&format!("{at} trigger {n}"), trigger))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path,
            regex: regex(&format!("{at} match_pattern"), &rule.match_pattern)?,
            method,
            target: target(&format!("{at} rewrite_to"), &rule.rewrite_to)?,
            triggers,
        })
    }

    /// Whether a matched request must have its body buffered before the triggers are evaluated.
    pub(super) fn reads_payload(&self) -> bool {
        self.triggers.iter().any(|t| t.payload.is_some())
    }
}

/// Tyk's endpoint path as a regex (`httputil.PreparePathRegexp` with prefix and suffix matching
/// off, Tyk's defaults): `{name}` (when the braces pair up) is `([^/]+)`, `/*/` is `/[^/]+/`,
/// `/*` is `/.*`, the rest is a regex; `(?i)` in front with `ignore_endpoint_case`.
fn endpoint_pattern(path: &str, ignore_case: bool) -> String {
    let mut pattern = path.to_owned();
    let open = path.matches('{').count();
    if open > 0 && open == path.matches('}').count() {
        let mut out = String::with_capacity(pattern.len());
        let mut rest = pattern.as_str();
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start + 1..].find('}') else {
                break;
            };
            out.push_str(&rest[..start]);
            if len == 0 {
                // `{}` is not a parameter (Tyk's `{([^}]+)}` needs a name).
                out.push_str("{}");
            } else {
                out.push_str("([^/]+)");
            }
            rest = &rest[start + 1 + len + 1..];
        }
        out.push_str(rest);
        pattern = out;
    }
    if pattern.contains("/*") {
        pattern = pattern.replace("/*/", "/[^/]+/").replace("/*", "/.*");
    }
    match ignore_case {
        true => format!("(?i){pattern}"),
        false => pattern,
    }
}

fn regex(at: &str, pattern: &str) -> Result<Regex, RewriteConfigError> {
    Regex::new(pattern).map_err(|e| RewriteConfigError::Regex {
        at: at.to_owned(),
        message: e.to_string(),
    })
}

/// A compiled `rewrite_to`, and whether it is absolute (`http://` or `https://` as written:
/// what a variable or a capture renders never makes a target absolute).
#[derive(Debug)]
pub(super) struct Target {
    pub(super) template: Template,
    pub(super) absolute: bool,
    /// Where it is written, for build errors.
    pub(super) at: String,
}

fn target(at: &str, source: &str) -> Result<Target, RewriteConfigError> {
    let template = Template::parse_url(source).map_err(|source| RewriteConfigError::Template {
        at: at.to_owned(),
        source,
    })?;
    let absolute = match template.url_scheme() {
        None => false,
        Some(scheme) if ["http", "https"].contains(&scheme.to_ascii_lowercase().as_str()) => true,
        Some(scheme) => {
            return Err(RewriteConfigError::Scheme {
                at: at.to_owned(),
                scheme: scheme.to_owned(),
            });
        }
    };
    Ok(Target {
        template,
        absolute,
        at: at.to_owned(),
    })
}

/// A compiled [`RegexMatch`].
#[derive(Debug)]
pub(super) struct Matcher {
    pub(super) regex: Regex,
    pub(super) reverse: bool,
}

impl Matcher {
    fn compile(at: &str, rule: &RegexMatch) -> Result<Self, RewriteConfigError> {
        Ok(Self {
            regex: regex(at, &rule.match_rx)?,
            reverse: rule.reverse,
        })
    }
}

/// A compiled [`Trigger`]: its groups in Tyk's evaluation order.
#[derive(Debug)]
pub(super) struct CompiledTrigger {
    pub(super) all: bool,
    /// (header, its canonical name for context keys, matcher).
    pub(super) headers: Vec<(HeaderName, String, Matcher)>,
    pub(super) query: Vec<(String, Matcher)>,
    pub(super) path_parts: Vec<(String, Matcher)>,
    pub(super) session_meta: Vec<(String, Matcher)>,
    pub(super) context: Vec<(String, Matcher)>,
    pub(super) payload: Option<Matcher>,
    pub(super) target: Target,
}

impl CompiledTrigger {
    fn compile(at: &str, trigger: &Trigger) -> Result<Self, RewriteConfigError> {
        let options = &trigger.options;
        let group = |name: &str, map: &BTreeMap<String, RegexMatch>| {
            map.iter()
                .map(|(key, rule)| {
                    Ok((
                        key.clone(),
                        Matcher::compile(&format!("{at} {name}[{key:?}]"), rule)?,
                    ))
                })
                .collect::<Result<Vec<_>, RewriteConfigError>>()
        };
        let headers = group("header_matches", &options.header_matches)?
            .into_iter()
            .map(|(name, matcher)| {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    RewriteConfigError::HeaderName {
                        at: format!("{at} header_matches"),
                        name: name.clone(),
                    }
                })?;
                Ok((header, canonical_header_name(&name), matcher))
            })
            .collect::<Result<Vec<_>, RewriteConfigError>>()?;
        let payload = match &options.payload_matches {
            Some(rule) if !rule.match_rx.is_empty() => {
                Some(Matcher::compile(&format!("{at} payload_matches"), rule)?)
            }
            _ => None,
        };
        let compiled = Self {
            all: trigger.on == TriggerOn::All,
            headers,
            query: group("query_val_matches", &options.query_val_matches)?,
            path_parts: group("path_part_matches", &options.path_part_matches)?,
            session_meta: group("session_meta_matches", &options.session_meta_matches)?,
            context: group("request_context_matches", &options.request_context_matches)?,
            payload,
            target: target(&format!("{at} rewrite_to"), &trigger.rewrite_to)?,
        };
        if compiled.headers.is_empty()
            && compiled.query.is_empty()
            && compiled.path_parts.is_empty()
            && compiled.session_meta.is_empty()
            && compiled.context.is_empty()
            && compiled.payload.is_none()
        {
            return Err(RewriteConfigError::EmptyTrigger { at: at.to_owned() });
        }
        Ok(compiled)
    }
}

/// `x-test` → `X-Test` (Go's `CanonicalMIMEHeaderKey`, which Tyk's context keys use).
pub(super) fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}
