//! Per request: find the rule, evaluate its triggers, publish their context values, render the
//! target and swap the URI.

use std::borrow::Cow;
use std::cell::OnceCell;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use keycard_core::metadata::Metadata;
use keycard_core::vars::{RenderError, Vars};
use regex::{CaptureLocations, Captures};
use serde_json::Value;

use super::layer::Config;
use super::rule::{CompiledTrigger, Matcher, Target};
use crate::context::{ContextValues, RequestVars};
use crate::normalize::{self, InvalidPath};
use crate::response::{invalid_request_path, json_error};
use crate::session::Session;

/// The URI a request had before [`UrlRewriteLayer`](super::UrlRewriteLayer) rewrote it (a request extension, present
/// only on rewritten requests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrittenFrom(pub Uri);

/// At most this many payload matches publish context values: a regex that matches everywhere
/// (`a*`) must not turn a 1 MiB body into a million context entries.
pub(super) const MAX_PAYLOAD_MATCHES: usize = 64;

/// The rule that matched a request, the text it matched (the request's path and query, shared,
/// not copied) and where its groups are in that text.
#[derive(Debug)]
pub(super) struct Matched {
    pub(super) rule: usize,
    text: PathAndQuery,
    groups: CaptureLocations,
    /// When the pattern matched the percent-decoded text: for each byte of that text, where it
    /// came from in `text` (and `text`'s length at the end), so every group is read back from
    /// the request's own text.
    decoded: Option<Box<[usize]>>,
}

/// The percent-decoded form of a path and query, and where each of its bytes came from.
struct Decoded {
    text: String,
    offsets: Box<[usize]>,
}

impl Decoded {
    /// `None` when `text` has no escape, or decodes to something that is not UTF-8 (or has a
    /// malformed escape, which only a query can have: such a text is not retried).
    fn new(text: &str) -> Option<Self> {
        if !text.contains('%') {
            return None;
        }
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut offsets = Vec::with_capacity(bytes.len() + 1);
        let mut at = 0;
        while at < bytes.len() {
            offsets.push(at);
            if bytes[at] == b'%' {
                let hex = |i: usize| bytes.get(at + i).and_then(|&b| char::from(b).to_digit(16));
                let (high, low) = (hex(1)?, hex(2)?);
                out.push(u8::try_from(high * 16 + low).expect("two hex digits fit a byte"));
                at += 3;
            } else {
                out.push(bytes[at]);
                at += 1;
            }
        }
        offsets.push(bytes.len());
        Some(Self {
            text: String::from_utf8(out).ok()?,
            offsets: offsets.into_boxed_slice(),
        })
    }
}

impl Matched {
    /// The rule that takes the request: rules are tried in the order added, skipping those
    /// whose method does not fit. A rule with an endpoint `path` that fits the request's path
    /// takes it whether or not its pattern then matches (Tyk: the endpoint decides); a rule
    /// without one takes it only when its pattern matches.
    ///
    /// A pattern is matched against the request's (normalised) path and query, then, when that
    /// fails and the text has escapes, against its percent-decoded form, as Tyk does
    /// (`/users/a%20b` matches `^/users/a b$`); endpoint paths likewise. The groups are read
    /// back from the request's own text either way: decoding decides *whether* a rule matches,
    /// never what text lands in the target, so `%2F` stays `%2F` and `%252e%252e` stays
    /// `%252e%252e` (the path every stage and the upstream see is unchanged).
    ///
    /// With several rules, one pass of the rule set per form of the text finds the candidates
    /// and only the winner runs again for its groups; a single rule runs once. A path without
    /// `%` is never decoded.
    pub(super) fn find(config: &Config, method: &Method, uri: &Uri) -> Option<Self> {
        let text = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // Decoded only when a match on the text as it is fails and the text has escapes.
        let decoded = OnceCell::new();
        let decode = || decoded.get_or_init(|| Decoded::new(text.as_str())).as_ref();
        let raw_set = (config.rules.len() > 1).then(|| config.set.matches(text.as_str()));
        let retry_set = OnceCell::new();
        for (index, rule) in config.rules.iter().enumerate() {
            if rule.method.as_ref().is_some_and(|wanted| wanted != method) {
                continue;
            }
            let endpoint = rule.path.as_ref();
            if let Some(endpoint) = endpoint {
                let fits = endpoint.is_match(text.path())
                    || decode().is_some_and(|d| {
                        let end = d.text.find('?').unwrap_or(d.text.len());
                        endpoint.is_match(&d.text[..end])
                    });
                if !fits {
                    continue;
                }
            }
            // Group slots only for a rule the set says matches (or the only rule).
            if raw_set.as_ref().is_none_or(|set| set.matched(index)) {
                let mut groups = rule.regex.capture_locations();
                if rule
                    .regex
                    .captures_read(&mut groups, text.as_str())
                    .is_some()
                {
                    return Some(Self {
                        rule: index,
                        text,
                        groups,
                        decoded: None,
                    });
                }
            }
            if let Some(d) = decode() {
                let retry = match &raw_set {
                    Some(_) => retry_set
                        .get_or_init(|| config.set.matches(&d.text))
                        .matched(index),
                    None => true,
                };
                if retry {
                    let mut groups = rule.regex.capture_locations();
                    if rule.regex.captures_read(&mut groups, &d.text).is_some() {
                        let offsets = d.offsets.clone();
                        return Some(Self {
                            rule: index,
                            text,
                            groups,
                            decoded: Some(offsets),
                        });
                    }
                }
            }
            if endpoint.is_some() {
                return None;
            }
        }
        None
    }

    fn group(&self, index: usize) -> Option<&str> {
        let (start, end) = self.groups.get(index)?;
        let (start, end) = match &self.decoded {
            Some(offsets) => (offsets[start], offsets[end]),
            None => (start, end),
        };
        self.text.as_str().get(start..end)
    }
}

/// Why a matched request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The body a payload trigger must read is over the limit.
    BodyTooLarge,
    /// The body a payload trigger must read failed mid-way (client gone, bad framing).
    BodyUnreadable,
    /// The target renders to something that is not a URL, or a variable made a dot segment.
    InvalidTarget,
    /// An absolute target whose host and port are not in the allow-list.
    TargetNotAllowed,
    /// The request's path cannot be normalised, or text captured from it made a dot segment.
    InvalidPath(InvalidPath),
}

impl Refusal {
    pub(super) fn response<B: From<Bytes>>(self) -> Response<B> {
        let (status, message) = match self {
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
            Self::BodyUnreadable => (StatusCode::BAD_REQUEST, "Failed to read request body"),
            Self::InvalidTarget => (StatusCode::INTERNAL_SERVER_ERROR, "Invalid rewrite target"),
            Self::TargetNotAllowed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Rewrite target not allowed",
            ),
            Self::InvalidPath(why) => return invalid_request_path(why),
        };
        json_error(status, message)
    }
}

/// The variables of a rewrite: the request's, plus the matched groups as `$N`.
struct RewriteVars<'a> {
    request: RequestVars<'a>,
    matched: &'a Matched,
}

impl Vars for RewriteVars<'_> {
    fn metadata(&self) -> Option<&Metadata> {
        self.request.metadata()
    }

    fn context(&self, name: &str) -> Option<Cow<'_, str>> {
        self.request.context(name)
    }

    fn capture(&self, index: usize) -> Option<&str> {
        self.matched.group(index)
    }
}

/// Rewrites `request` by the matched rule: the first trigger that fires (publishing its
/// context values) or the rule itself supplies the target. `body` is the buffered body when
/// the rule has payload triggers.
pub(super) fn rewrite<B>(
    config: &Config,
    matched: &Matched,
    request: &mut Request<B>,
    handle: Option<&Session>,
    body: Option<&[u8]>,
) -> Result<(), Refusal> {
    let rule = &config.rules[matched.rule];
    let mut apply = |metadata: Option<&Metadata>| {
        let mut values = Vec::new();
        let mut target = &rule.target;
        {
            let vars = RequestVars::new(request, metadata);
            let body = body.map(String::from_utf8_lossy);
            for (n, trigger) in rule.triggers.iter().enumerate() {
                if fires(trigger, n, &vars, body.as_deref(), &mut values) {
                    target = &trigger.target;
                    break;
                }
                // Only the trigger that fires publishes its matches.
                values.clear();
            }
        }
        // Published before rendering, so the trigger's own target can read them.
        for (name, value) in values {
            ContextValues::insert_into(request.extensions_mut(), name, value);
        }
        render(config, target, matched, request, metadata)
    };
    let uri = match handle {
        Some(handle) => handle.with_metadata(|metadata| apply(Some(metadata))),
        None => apply(None),
    }?;
    let original = std::mem::replace(request.uri_mut(), uri);
    request.extensions_mut().insert(RewrittenFrom(original));
    Ok(())
}

fn render<B>(
    config: &Config,
    target: &Target,
    matched: &Matched,
    request: &Request<B>,
    metadata: Option<&Metadata>,
) -> Result<Uri, Refusal> {
    let vars = RewriteVars {
        request: RequestVars::new(request, metadata),
        matched,
    };
    let rendered = target
        .template
        .render_target(&vars)
        .map_err(|error| match error {
            // The client's own text made the dot segment: its request is at fault.
            RenderError::CapturedDotSegment => {
                tracing::debug!(%error, "keycard: URL rewrite refused");
                Refusal::InvalidPath(InvalidPath::DotSegment)
            }
            error => {
                tracing::warn!(%error, "keycard: URL rewrite target refused");
                Refusal::InvalidTarget
            }
        })?;
    config.target_uri(
        request.uri(),
        rendered.value,
        target.absolute || rendered.absolute,
    )
}

impl Config {
    /// The URI a rendered target stands for: absolute (`http(s)://host/...` as written, checked
    /// against the allow-list), or a path (a leading `/` added if missing) on the request's own
    /// scheme and authority. Either way the path is brought to the form request paths have
    /// (see [`normalized`]).
    fn target_uri(&self, original: &Uri, rendered: String, absolute: bool) -> Result<Uri, Refusal> {
        let target_len = rendered.len();
        let invalid = || {
            tracing::warn!(target_len, "keycard: URL rewrite target is not a valid URL");
            Refusal::InvalidTarget
        };
        let mut parts = http::uri::Parts::default();
        let path = if absolute {
            let uri: Uri = rendered.parse().map_err(|_| invalid())?;
            let uri = uri.into_parts();
            let (Some(scheme), Some(authority)) = (uri.scheme, uri.authority) else {
                return Err(invalid());
            };
            let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
            let (host, port) = (authority.host(), authority.port_u16());
            if !self
                .allowed_hosts
                .iter()
                .any(|entry| entry.allows(host, port, default_port))
            {
                tracing::warn!(
                    host,
                    port,
                    "keycard: URL rewrite target host and port not in the allow-list"
                );
                return Err(Refusal::TargetNotAllowed);
            }
            parts.scheme = Some(scheme);
            parts.authority = Some(authority);
            uri.path_and_query
                .unwrap_or_else(|| PathAndQuery::from_static("/"))
        } else {
            // A path as written, so nothing a variable or capture renders (`https://evil/`)
            // makes it absolute.
            let path = match rendered.starts_with('/') {
                true => rendered,
                false => format!("/{rendered}"),
            };
            parts.scheme = original.scheme().cloned();
            parts.authority = original.authority().cloned();
            // Shrunk to fit, the buffer becomes the URI's bytes as it is (see `render_header`).
            let bytes = Bytes::from(path.into_bytes().into_boxed_slice());
            PathAndQuery::from_maybe_shared(bytes).map_err(|_| invalid())?
        };
        parts.path_and_query = Some(normalized(path).map_err(|why| {
            tracing::warn!(
                ?why,
                "keycard: URL rewrite target path cannot be normalised"
            );
            Refusal::InvalidTarget
        })?);
        Uri::from_parts(parts).map_err(|_| invalid())
    }
}

/// A rendered path in the form request paths have, so the stages after the rewrite and the
/// service see one path (see [`normalize`]): leading slashes collapsed to one (`//evil/x` would
/// be a network-path reference, naming a host, to anything that resolves it against a base),
/// escapes normalised; a dot segment written in the template, or a malformed escape, has no
/// such form. The query is left as rendered.
fn normalized(path_and_query: PathAndQuery) -> Result<PathAndQuery, InvalidPath> {
    let path = path_and_query.path();
    let trimmed = match path.starts_with("//") {
        true => &path[path.len() - path.trim_start_matches('/').len() - 1..],
        false => path,
    };
    let normal = normalize::path(trimmed)?;
    if matches!(normal, Cow::Borrowed(_)) && trimmed.len() == path.len() {
        return Ok(path_and_query);
    }
    let mut text = normal.into_owned();
    if let Some(query) = path_and_query.query() {
        text.push('?');
        text.push_str(query);
    }
    PathAndQuery::from_maybe_shared(Bytes::from(text)).map_err(|_| InvalidPath::MalformedEscape)
}

/// Whether `trigger` (number `n`) fires, pushing its context values into `out`. Groups are
/// evaluated in Tyk's order (headers, query, path parts, session meta, context, payload); `any`
/// stops at the first group that fires, `all` at the first that does not.
fn fires(
    trigger: &CompiledTrigger,
    n: usize,
    vars: &RequestVars<'_>,
    body: Option<&str>,
    out: &mut Vec<(String, String)>,
) -> bool {
    let all = trigger.all;
    for group in 0..6 {
        let fired = match group {
            0 => entries(
                all,
                &trigger.headers,
                out,
                |(name, canonical, matcher), out| {
                    let mut fired = false;
                    for (i, value) in vars.headers.get_all(name).iter().enumerate() {
                        if let Ok(value) = value.to_str() {
                            let key = format!("trigger-{n}-{canonical}-{i}");
                            fired |= match_value(matcher, value, &key, out);
                        }
                    }
                    fired
                },
            ),
            1 => entries(all, &trigger.query, out, |(name, matcher), out| {
                let query = vars.uri.query().unwrap_or_default();
                let mut fired = false;
                let values = form_urlencoded::parse(query.as_bytes())
                    .filter(|(param, _)| param == name)
                    .enumerate();
                for (i, (_, value)) in values {
                    let key = format!("trigger-{n}-{name}-{i}");
                    fired |= match_value(matcher, &value, &key, out);
                }
                fired
            }),
            2 => entries(all, &trigger.path_parts, out, |(name, matcher), out| {
                // `i` counts matching segments, as in Tyk.
                let mut i = 0;
                for part in vars.uri.path().split('/').filter(|p| !p.is_empty()) {
                    if match_value(matcher, part, &format!("trigger-{n}-{name}-{i}"), out) {
                        i += 1;
                    }
                }
                i > 0
            }),
            3 => entries(all, &trigger.session_meta, out, |(key, matcher), out| {
                // String values only, as in Tyk.
                let value = match vars.metadata.and_then(|meta| meta.get(key)) {
                    Some(Value::String(text)) => text,
                    _ => return false,
                };
                match_value(matcher, value, &format!("trigger-{n}-{key}"), out)
            }),
            4 => entries(all, &trigger.context, out, |(name, matcher), out| {
                vars.context(name).is_some_and(|value| {
                    match_value(matcher, &value, &format!("trigger-{n}-{name}"), out)
                })
            }),
            _ => trigger
                .payload
                .as_ref()
                .map(|matcher| payload_fires(matcher, n, body.unwrap_or_default(), out)),
        };
        match fired {
            Some(true) if !all => return true,
            Some(false) if all => return false,
            _ => {}
        }
    }
    all
}

/// A group's result: `None` when it has no entries; otherwise whether any (`all`: every) entry
/// matched. Every entry is evaluated, so every match publishes its values.
fn entries<T>(
    all: bool,
    items: &[T],
    out: &mut Vec<(String, String)>,
    mut each: impl FnMut(&T, &mut Vec<(String, String)>) -> bool,
) -> Option<bool> {
    if items.is_empty() {
        return None;
    }
    let mut fired = all;
    for item in items {
        let matched = each(item, out);
        fired = if all {
            fired && matched
        } else {
            fired || matched
        };
    }
    Some(fired)
}

/// `trigger-<n>-payload` is the first match; `trigger-<n>-payload-<i>[-<g>]` every match `i`
/// (at most [`MAX_PAYLOAD_MATCHES`]).
fn payload_fires(matcher: &Matcher, n: usize, body: &str, out: &mut Vec<(String, String)>) -> bool {
    if matcher.reverse {
        return !matcher.regex.is_match(body);
    }
    let mut fired = false;
    for (i, captures) in matcher
        .regex
        .captures_iter(body)
        .take(MAX_PAYLOAD_MATCHES)
        .enumerate()
    {
        if i == 0 {
            out.push((format!("trigger-{n}-payload"), captures[0].to_owned()));
        }
        push_captures(&format!("trigger-{n}-payload-{i}"), &captures, out);
        fired = true;
    }
    fired
}

/// Matches one value; on a (non-reversed) match pushes `key` = the whole match and `key-<g>` =
/// group `g + 1` (unmatched groups empty, as in Tyk).
fn match_value(matcher: &Matcher, value: &str, key: &str, out: &mut Vec<(String, String)>) -> bool {
    if matcher.reverse {
        return !matcher.regex.is_match(value);
    }
    match matcher.regex.captures(value) {
        Some(captures) => {
            push_captures(key, &captures, out);
            true
        }
        None => false,
    }
}

fn push_captures(key: &str, captures: &Captures<'_>, out: &mut Vec<(String, String)>) {
    for (index, group) in captures.iter().enumerate() {
        let text = group.map_or("", |m| m.as_str()).to_owned();
        match index {
            0 => out.push((key.to_owned(), text)),
            g => out.push((format!("{key}-{}", g - 1), text)),
        }
    }
}
