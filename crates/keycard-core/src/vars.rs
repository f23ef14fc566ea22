//! The variable language: `$tyk_meta.KEY`, `$tyk_context.NAME` and, in URL rewrite targets, `$N`
//! capture groups (reference: `docs/variables.md` in the repository).
//!
//! A [`Template`] is parsed once, when a layer is built, into literal text and variables.
//! Rendering walks those parts and never scans rendered text again, so a client-supplied value
//! that contains `$tyk_meta.secret` stays literal. Values are encoded for where they land:
//! [`Template::render_header`] checks the result is a valid header value, and
//! [`Template::render_url`] percent-encodes path segments and form-encodes the query.
//!
//! ```
//! use std::borrow::Cow;
//!
//! use keycard_core::vars::{Metadata, Template, Vars};
//! use serde_json::json;
//!
//! struct Request {
//!     meta: Metadata,
//!     path: String,
//! }
//!
//! impl Vars for Request {
//!     fn metadata(&self) -> Option<&Metadata> {
//!         Some(&self.meta)
//!     }
//!     fn context(&self, name: &str) -> Option<Cow<'_, str>> {
//!         (name == "path").then(|| Cow::Borrowed(self.path.as_str()))
//!     }
//! }
//!
//! let serde_json::Value::Object(meta) = json!({"uid": "u 1/2", "tier": "gold"}) else {
//!     unreachable!()
//! };
//! let request = Request { meta, path: "/orders".into() };
//!
//! let header = Template::parse("$tyk_meta.tier via $tyk_context.path")?;
//! assert_eq!(header.render_header(&request)?.value, "gold via /orders");
//!
//! let target = Template::parse_url("/users/$tyk_meta.uid?u=$tyk_meta.uid")?;
//! assert_eq!(target.render_url(&request)?.value, "/users/u%201%2F2?u=u+1%2F2");
//!
//! let missing = Template::parse("[$tyk_meta.nope]")?.render_text(&request);
//! assert_eq!(missing.value, "[]");
//! assert!(missing.missing);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

pub use crate::metadata::Metadata;

/// What a template reads while rendering.
pub trait Vars {
    /// The session metadata the request sees; `None` when the request has no session.
    fn metadata(&self) -> Option<&Metadata>;

    /// A context value (`$tyk_context.NAME`); `None` when absent.
    fn context(&self, name: &str) -> Option<Cow<'_, str>>;

    /// Capture group `index` of a URL-rewrite match (`$0` is the whole match); `None` by default.
    fn capture(&self, index: usize) -> Option<&str> {
        let _ = index;
        None
    }
}

/// A parsed template: literal text, `$tyk_meta` / `$tyk_context` variables and, for URL rewrite
/// targets, `$N` capture groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// Total literal length plus a guess per variable, so most renders allocate once.
    capacity: usize,
    /// Whether the template starts with a literal `scheme://` whose authority the first literal
    /// does not end, so the variables after it land in the authority (URL templates only).
    authority_open: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Meta(Box<str>),
    Context(Box<str>),
    Capture(usize),
}

/// Bytes reserved per variable when sizing the output.
const VARIABLE_CAPACITY_GUESS: usize = 16;

/// A rendered value, plus whether any referenced variable was missing (header rules with
/// `omit_if_missing` drop the header then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered<T> {
    /// The rendered value; missing variables rendered as the empty string.
    pub value: T,
    /// Whether a referenced metadata key, context value or capture group was absent (a request
    /// without a session counts as every metadata key missing).
    pub missing: bool,
}

/// A variable a template references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable<'a> {
    /// `$tyk_meta.NAME`: a session metadata entry.
    Meta(&'a str),
    /// `$tyk_context.NAME`: a request context value.
    Context(&'a str),
    /// `$N`: capture group `N` of a URL rewrite match.
    Capture(usize),
}

/// Why a template could not be parsed. Offsets are byte offsets into the template source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `${` without a closing `}`.
    #[error("unterminated `${{` at byte {offset}: expected a closing `}}`")]
    Unterminated {
        /// Where the `${` starts.
        offset: usize,
    },
    /// `${tyk_meta.}`, `${tyk_context}` and the like.
    #[error("empty variable name in `${{...}}` at byte {offset}")]
    EmptyName {
        /// Where the `${` starts.
        offset: usize,
    },
    /// `${foo.bar}`: only `tyk_meta` and `tyk_context` (and capture numbers in URL templates)
    /// may be braced.
    #[error(
        "unknown variable namespace `{namespace}` in `${{...}}` at byte {offset}: expected `tyk_meta` or `tyk_context`"
    )]
    UnknownNamespace {
        /// Where the `${` starts.
        offset: usize,
        /// What stood where `tyk_meta` or `tyk_context` was expected.
        namespace: String,
    },
    /// A `$N` capture group number that does not fit in `usize`.
    #[error("capture group number at byte {offset} is too large")]
    CaptureTooLarge {
        /// Where the `$` starts.
        offset: usize,
    },
    /// A `$N` capture in the scheme or authority of an absolute URL target
    /// (`http://backend$1`): client text could name another host (`/api@evil.example`).
    #[error(
        "capture group at byte {offset} is in the URL's scheme or authority: captures may only \
         follow the `/`, `?` or `#` that ends the authority (`http://backend.internal/$1`)"
    )]
    CaptureInAuthority {
        /// Where the `$` starts.
        offset: usize,
    },
}

/// Why a parsed template could not be rendered for its destination.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The rendered text is not a valid header value (CR, LF, NUL or another forbidden byte).
    #[error("Invalid header value")]
    InvalidHeaderValue,
    /// A variable would produce a `.` or `..` segment in the rewritten path, in any spelling
    /// (see [`hides_dot_segment`]).
    #[error("rendered URL would contain a `.` or `..` path segment")]
    DotSegment,
    /// Captured text (the client's) would produce a `.` or `..` segment in the rewritten path,
    /// in any spelling (see [`hides_dot_segment`]).
    #[error("rendered URL would contain a `.` or `..` path segment made of captured text")]
    CapturedDotSegment,
    /// A `$tyk_meta` value leading a URL target starts with `http://` or `https://` but is not
    /// `scheme://host[:port][/path]` (userinfo, a query, a fragment, a dot segment or a byte a
    /// path may not hold); see [`Template::render_target`].
    #[error(
        "metadata value leading the URL is not an upstream of the form scheme://host[:port][/path]"
    )]
    InvalidUpstream,
    /// A capture group would land in the authority opened by a metadata upstream
    /// (`$tyk_meta.upstream$1`): client text never chooses a host or a port.
    #[error("capture group would land in the URL's authority")]
    CaptureInAuthority,
}

const META: &str = "tyk_meta";
const CONTEXT: &str = "tyk_context";

impl Template {
    /// Parses a template for header values and plain text: `$tyk_meta.NAME`,
    /// `$tyk_context.NAME`, `${tyk_meta.any characters but a closing brace}`,
    /// `${tyk_context.NAME}` and `$$` for a literal `$`. Every other `$` is literal text, `$1`
    /// included.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        Parser::new(source, false).run()
    }

    /// Parses a URL rewrite target: as [`Template::parse`], plus `$N` (one or more digits; `$12`
    /// is group 12) and `${N}` for capture groups.
    ///
    /// A target that starts with a literal `scheme://` is absolute (see [`url_scheme`]); a
    /// capture before the `/`, `?` or `#` that ends its authority fails with
    /// [`TemplateError::CaptureInAuthority`], so client text never chooses the host, the port
    /// or userinfo. `$tyk_meta` / `$tyk_context` may stand there: a `$tyk_meta` value of the form
    /// `host` or `host:port` is inserted as it is, any other value percent-encoded, so neither can
    /// add `@`, `/`, `?` or `#` (what host and port they reach is for an allow-list to decide; see
    /// [`Template::render_target`]).
    ///
    /// [`url_scheme`]: Template::url_scheme
    pub fn parse_url(source: &str) -> Result<Self, TemplateError> {
        Parser::new(source, true).run()
    }

    /// The scheme of an absolute URL template: `Some("http")` when the template starts with the
    /// literal text `http://`. A scheme that comes from a variable or a capture does not count,
    /// so such a template renders a path.
    pub fn url_scheme(&self) -> Option<&str> {
        match self.parts.first() {
            Some(Part::Literal(text)) => url_scheme(text),
            _ => None,
        }
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has no variables at all, so a layer can render it once.
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|part| matches!(part, Part::Literal(_)))
    }

    /// Every variable the template references, in order of appearance.
    pub fn variables(&self) -> impl Iterator<Item = Variable<'_>> {
        self.parts.iter().filter_map(|part| match part {
            Part::Literal(_) => None,
            Part::Meta(name) => Some(Variable::Meta(name)),
            Part::Context(name) => Some(Variable::Context(name)),
            Part::Capture(index) => Some(Variable::Capture(*index)),
        })
    }

    /// Renders plain text, with no destination encoding. Missing variables render as the empty
    /// string.
    pub fn render_text(&self, vars: &(impl Vars + ?Sized)) -> Rendered<String> {
        let mut out = String::with_capacity(self.capacity);
        let mut missing = false;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Meta(name) => {
                    match vars.metadata().and_then(|meta| lookup_meta(meta, name)) {
                        Some(value) => render_value(value, &mut out),
                        None => missing = true,
                    }
                }
                Part::Context(name) => match vars.context(name) {
                    Some(value) => out.push_str(&value),
                    None => missing = true,
                },
                Part::Capture(index) => match vars.capture(*index) {
                    Some(value) => out.push_str(value),
                    None => missing = true,
                },
            }
        }
        Rendered {
            value: out,
            missing,
        }
    }

    /// Renders a header value. The rendered text must be a valid header value: CR, LF, NUL or
    /// any other byte [`http::HeaderValue`] rejects fails with
    /// [`RenderError::InvalidHeaderValue`], so a value can never split a header.
    pub fn render_header(
        &self,
        vars: &(impl Vars + ?Sized),
    ) -> Result<Rendered<http::HeaderValue>, RenderError> {
        let invalid = |_| RenderError::InvalidHeaderValue;
        // The common case, a header that is one string metadata value: copied once, straight
        // from the metadata.
        if let [Part::Meta(name)] = &*self.parts
            && let Some(Value::String(text)) =
                vars.metadata().and_then(|meta| lookup_meta(meta, name))
        {
            let value = http::HeaderValue::from_str(text).map_err(invalid)?;
            return Ok(Rendered {
                value,
                missing: false,
            });
        }
        let Rendered { value, missing } = self.render_text(vars);
        // Shrunk to fit, the buffer becomes the header's bytes as it is; `Bytes` would give a
        // `Vec` with spare capacity a second, shared allocation to track it.
        let bytes = bytes::Bytes::from(value.into_bytes().into_boxed_slice());
        let value = http::HeaderValue::from_maybe_shared(bytes).map_err(invalid)?;
        Ok(Rendered { value, missing })
    }

    /// Renders a URL rewrite target.
    ///
    /// Literal text is inserted as written. Captures (`$N`) come from the request's own path and
    /// query and are inserted raw: neither encoded nor expanded again. `$tyk_meta` and
    /// `$tyk_context` values are encoded by where they land: before the template's first literal
    /// `?` as one path segment (percent-encoded, only `A-Za-z0-9-._~` kept), after it
    /// form-encoded (space becomes `+`).
    ///
    /// A path segment holding variable output that is, or hides, a dot segment
    /// ([`hides_dot_segment`]: `..`, `%2e%2e`, or `..` between `\`, `%5C` or `%2F`) fails with
    /// [`RenderError::DotSegment`]; one holding captured text with
    /// [`RenderError::CapturedDotSegment`]. So neither metadata nor the client can climb out of
    /// the target's fixed prefix, not even for an upstream that decodes `%2F` or treats `\` as
    /// a separator before it normalises: `../admin` (sent as `..%2Fadmin`) is refused too. Dots
    /// written literally in the template are left alone.
    pub fn render_url(&self, vars: &(impl Vars + ?Sized)) -> Result<Rendered<String>, RenderError> {
        let RenderedUrl { value, missing, .. } = self.render_target(vars)?;
        Ok(Rendered { value, missing })
    }

    /// Renders a URL rewrite target as [`Template::render_url`] does, and says whether the
    /// result is absolute because of a metadata value: the per-key upstream idiom.
    ///
    /// - **A template that starts with `$tyk_meta.KEY`** whose value is a string starting with
    ///   `http://` or `https://` (any case): the value is the target's scheme and authority, and
    ///   optionally a path prefix, and is inserted as it is (Tyk leaves values starting with
    ///   `http` unescaped). It must be `scheme://host[:port][/path]`: no userinfo, query or
    ///   fragment, path characters RFC 3986 allows and no dot segment in any spelling;
    ///   otherwise [`RenderError::InvalidUpstream`]. [`RenderedUrl::absolute`] is then `true`,
    ///   for the caller to hold host and port to an allow-list. Any other value, and every
    ///   value in any other position, is encoded as before.
    /// - **In the authority of a template written absolute** (`http://$tyk_meta.host/...`), a
    ///   `$tyk_meta` value of the form `host` or `host:port` is inserted as it is (a port in
    ///   `host` works, as in Tyk); any other value is percent-encoded as before, so it can add
    ///   neither userinfo nor a path.
    /// - A capture (`$N`) that would land in an authority opened by a metadata value
    ///   (`$tyk_meta.upstream$1`) fails with [`RenderError::CaptureInAuthority`]: client text
    ///   never chooses a host or a port.
    pub fn render_target(&self, vars: &(impl Vars + ?Sized)) -> Result<RenderedUrl, RenderError> {
        let mut out = String::with_capacity(self.capacity);
        let mut missing = false;
        let mut path = PathState::default();
        let mut in_path = true;
        // Whether the output is in the authority of an absolute URL.
        let mut authority = false;
        let mut absolute = false;
        // For non-string metadata values, which are rendered before they are encoded.
        let mut scratch = String::new();
        let mut parts = self.parts.iter();
        if self.authority_open {
            // `scheme://` and the start of the authority, as written.
            if let Some(Part::Literal(text)) = parts.next() {
                out.push_str(text);
                authority = true;
            }
        } else if let Some(Part::Meta(name)) = self.parts.first()
            && let Some(Value::String(value)) =
                vars.metadata().and_then(|meta| lookup_meta(meta, name))
            && let Some(has_path) = upstream(value)?
        {
            parts.next();
            out.push_str(value);
            absolute = true;
            match has_path {
                // The value's last segment may continue in the template's next part.
                true => {
                    path.segment_start = out.rfind('/').map_or(out.len(), |at| at + 1);
                    path.variable = true;
                }
                false => authority = true,
            }
        }
        for part in parts {
            if authority {
                match part {
                    Part::Literal(text) => match text.find(['/', '?', '#']) {
                        None => out.push_str(text),
                        Some(end) => {
                            out.push_str(&text[..end]);
                            authority = false;
                            path = PathState {
                                segment_start: out.len(),
                                ..PathState::default()
                            };
                            let rest = &text[end..];
                            match rest.find('?') {
                                Some(query) => {
                                    path.push_raw(&mut out, &rest[..query], false)?;
                                    path.finish(&out)?;
                                    out.push_str(&rest[query..]);
                                    in_path = false;
                                }
                                None => path.push_raw(&mut out, rest, false)?,
                            }
                        }
                    },
                    Part::Capture(_) => return Err(RenderError::CaptureInAuthority),
                    Part::Meta(name) => {
                        let text = match vars.metadata().and_then(|meta| lookup_meta(meta, name)) {
                            Some(Value::String(text)) => text.as_str(),
                            Some(value) => {
                                scratch.clear();
                                render_value(value, &mut scratch);
                                scratch.as_str()
                            }
                            None => {
                                missing = true;
                                ""
                            }
                        };
                        if hides_dot_segment(text) {
                            return Err(RenderError::DotSegment);
                        }
                        match is_authority(text) {
                            true => out.push_str(text),
                            false => out.extend(utf8_percent_encode(text, PATH_SEGMENT)),
                        }
                    }
                    Part::Context(name) => {
                        let value = vars.context(name);
                        missing |= value.is_none();
                        let text = value.as_deref().unwrap_or("");
                        if hides_dot_segment(text) {
                            return Err(RenderError::DotSegment);
                        }
                        out.extend(utf8_percent_encode(text, PATH_SEGMENT));
                    }
                }
                continue;
            }
            match part {
                Part::Literal(text) if in_path => match text.find('?') {
                    Some(query) => {
                        path.push_raw(&mut out, &text[..query], false)?;
                        path.finish(&out)?;
                        out.push_str(&text[query..]);
                        in_path = false;
                    }
                    None => path.push_raw(&mut out, text, false)?,
                },
                Part::Literal(text) => out.push_str(text),
                Part::Capture(index) => {
                    let value = vars.capture(*index).unwrap_or_else(|| {
                        missing = true;
                        ""
                    });
                    if in_path {
                        path.push_raw(&mut out, value, true)?;
                    } else {
                        out.push_str(value);
                    }
                }
                Part::Meta(name) => {
                    let text = match vars.metadata().and_then(|meta| lookup_meta(meta, name)) {
                        Some(Value::String(text)) => text.as_str(),
                        Some(value) => {
                            scratch.clear();
                            render_value(value, &mut scratch);
                            scratch.as_str()
                        }
                        None => {
                            missing = true;
                            ""
                        }
                    };
                    encode_variable(&mut out, text, in_path, &mut path);
                }
                Part::Context(name) => {
                    let value = vars.context(name);
                    missing |= value.is_none();
                    encode_variable(&mut out, value.as_deref().unwrap_or(""), in_path, &mut path);
                }
            }
        }
        if in_path && !authority {
            path.finish(&out)?;
        }
        Ok(RenderedUrl {
            value: out,
            missing,
            absolute,
        })
    }
}

/// A rendered URL rewrite target ([`Template::render_target`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderedUrl {
    /// The rendered target; missing variables rendered as the empty string.
    pub value: String,
    /// Whether a referenced variable was absent (see [`Rendered::missing`]).
    pub missing: bool,
    /// Whether the target is an absolute URL because its leading `$tyk_meta` value is one (a
    /// per-key upstream). A template written absolute (`http://...`, see
    /// [`Template::url_scheme`]) does not set this: it is absolute as written.
    pub absolute: bool,
}

/// Whether `text` is an authority without userinfo: `host` or `host:port`, the host a name of
/// unreserved characters with at least one letter or digit, or an IPv6 address in brackets;
/// the port 1 to 5 digits.
fn is_authority(text: &str) -> bool {
    let (host, port) = match text.strip_prefix('[') {
        Some(ipv6) => match ipv6.split_once(']') {
            Some((address, rest)) => {
                let address_ok = !address.is_empty()
                    && address
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !address_ok {
                    return false;
                }
                match rest {
                    "" => return true,
                    rest => match rest.strip_prefix(':') {
                        Some(port) => ("[]", port),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match text.split_once(':') {
            Some((host, port)) => (host, port),
            None => (text, "80"),
        },
    };
    let host_ok = host == "[]"
        || (host.bytes().any(|b| b.is_ascii_alphanumeric())
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)));
    host_ok && (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

/// A per-key upstream (a metadata value leading a rewrite target): `None` when `value` does not
/// start with `http://` or `https://` (any case), so it is encoded as any value is; otherwise
/// whether it has a path after its authority, or why it cannot be an upstream.
fn upstream(value: &str) -> Result<Option<bool>, RenderError> {
    let Some(scheme) = url_scheme(value) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Ok(None);
    }
    let rest = &value[scheme.len() + 3..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path_byte = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%/".contains(&b);
    if !is_authority(authority)
        || !path.bytes().all(path_byte)
        || path.split('/').any(hides_dot_segment)
    {
        return Err(RenderError::InvalidUpstream);
    }
    Ok(Some(!path.is_empty()))
}

/// Everything but the unreserved characters of RFC 3986: a value becomes exactly one segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode_variable(out: &mut String, value: &str, in_path: bool, path: &mut PathState) {
    if in_path {
        out.extend(utf8_percent_encode(value, PATH_SEGMENT));
        path.variable = true;
    } else {
        out.extend(form_urlencoded::byte_serialize(value.as_bytes()));
    }
}

/// Tracks the path segment being written, to refuse dot segments made by variables or captures.
#[derive(Default)]
struct PathState {
    /// Byte offset in the output where the current segment starts.
    segment_start: usize,
    /// Whether variable output went into the current segment.
    variable: bool,
    /// Whether captured text went into the current segment.
    captured: bool,
    /// Past a captured `?` or `#`: the rest is not path.
    ended: bool,
}

impl PathState {
    /// Appends unencoded text (literal, or `captured` from the request), which may end
    /// segments; every segment it touches is checked.
    fn push_raw(
        &mut self,
        out: &mut String,
        text: &str,
        captured: bool,
    ) -> Result<(), RenderError> {
        let start = out.len();
        out.push_str(text);
        if self.ended {
            return Ok(());
        }
        // Where the part of `text` in the current segment starts.
        let mut from = 0;
        for (at, byte) in text.bytes().enumerate() {
            if !matches!(byte, b'/' | b'?' | b'#') {
                continue;
            }
            self.captured |= captured && at > from;
            self.check(&out[..start + at])?;
            self.segment_start = start + at + 1;
            self.variable = false;
            self.captured = false;
            from = at + 1;
            // A captured `?` or `#` ends the path.
            if byte != b'/' {
                self.ended = true;
                return Ok(());
            }
        }
        self.captured |= captured && text.len() > from;
        Ok(())
    }

    /// Ends the path at the end of `out`.
    fn finish(&self, out: &str) -> Result<(), RenderError> {
        self.check(out)
    }

    /// Checks the current segment, which ends at the end of `upto`.
    fn check(&self, upto: &str) -> Result<(), RenderError> {
        if self.ended || !(self.variable || self.captured) {
            return Ok(());
        }
        if hides_dot_segment(&upto[self.segment_start..]) {
            return Err(match self.captured {
                true => RenderError::CapturedDotSegment,
                false => RenderError::DotSegment,
            });
        }
        Ok(())
    }
}

/// Whether one path segment (no `/` in it) is a dot segment, or hides one, for some server:
/// `.` or `..` once `%2E` is decoded, or a `.` / `..` piece between backslashes or encoded
/// separators (`\`, `%5C`, `%2F`, any case), which servers that decode `%2F` before they
/// normalise, or that take `\` for `/`, resolve as one.
///
/// ```
/// use keycard_core::vars::hides_dot_segment;
///
/// for hiding in ["..", ".", "%2e%2E", ".%2e", "..%2Fadmin", r"a\..", "x%5c.%5cy", "..;", "..;jsessionid=1", ".%3Bx"] {
///     assert!(hides_dot_segment(hiding), "{hiding}");
/// }
/// for plain in ["", "...", "a..", "v1.2", "%252e%252e", "a%2Fb", "a;..", "x;y"] {
///     assert!(!hides_dot_segment(plain), "{plain}");
/// }
/// ```
pub fn hides_dot_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let escape = |at: usize, hex: &[u8; 2]| {
        bytes
            .get(at..at + 3)
            .is_some_and(|triplet| triplet[0] == b'%' && triplet[1..].eq_ignore_ascii_case(hex))
    };
    // Dots in the current piece, whether it holds anything else, and whether a `;` (a path
    // parameter: Tomcat and Jetty resolve `..;x` as `..`) ended its name.
    let (mut dots, mut other, mut params) = (0usize, false, false);
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'\\' || escape(at, b"5c") || escape(at, b"2f") {
            if !other && matches!(dots, 1 | 2) {
                return true;
            }
            (dots, other, params) = (0, false, false);
            at += if bytes[at] == b'\\' { 1 } else { 3 };
        } else if params {
            at += 1;
        } else if bytes[at] == b';' || escape(at, b"3b") {
            if !other && matches!(dots, 1 | 2) {
                return true;
            }
            params = true;
            at += if bytes[at] == b';' { 1 } else { 3 };
        } else if bytes[at] == b'.' {
            dots += 1;
            at += 1;
        } else if escape(at, b"2e") {
            dots += 1;
            at += 3;
        } else {
            other = true;
            at += 1;
        }
    }
    !other && matches!(dots, 1 | 2)
}

/// The scheme of `text` when it starts with `scheme://` (RFC 3986: a letter, then letters,
/// digits, `+`, `-`, `.`).
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

/// Renders one JSON value as text (the table in `docs/variables.md`): a string as is, an integer in
/// decimal, a float as the shortest round-trip decimal without an exponent, `true` / `false`,
/// null as nothing, an object as compact JSON, and an array as Tyk renders one: each element
/// rendered by these rules, then form-encoded (`a,b` → `a%2Cb`, space → `+`), empty ones left
/// out, joined with `,`, so a `,` in the result always separates elements.
///
/// ```
/// use keycard_core::vars::render_value;
///
/// let mut out = String::new();
/// render_value(&serde_json::json!(["abc", 456, 12.22, "abc,def", "", null, "a b"]), &mut out);
/// assert_eq!(out, "abc,456,12.22,abc%2Cdef,a+b");
/// ```
pub fn render_value(value: &Value, out: &mut String) {
    // Writing to a `String` cannot fail.
    match value {
        Value::String(text) => out.push_str(text),
        Value::Number(number) => {
            if let Some(n) = number.as_i64() {
                let _ = write!(out, "{n}");
            } else if let Some(n) = number.as_u64() {
                let _ = write!(out, "{n}");
            } else if let Some(n) = number.as_f64() {
                // f64's Display is shortest round-trip and never uses an exponent
                // (1e21 -> 1000000000000000000000), where serde_json's own Display would.
                let _ = write!(out, "{n}");
            }
        }
        // Tyk renders "" for bools and objects (#2140); we render them (spec fix).
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => {}
        Value::Array(items) => render_array(items, out),
        Value::Object(_) => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Tyk's array rendering (`valToStr`): every element that renders non-empty, form-encoded
/// (`url.QueryEscape`), joined with `,`.
fn render_array(items: &[Value], out: &mut String) {
    let mut first = true;
    // For elements that are not strings: rendered here, then encoded.
    let mut scratch = String::new();
    for item in items {
        let text = match item {
            Value::String(text) => text.as_str(),
            item => {
                scratch.clear();
                render_value(item, &mut scratch);
                scratch.as_str()
            }
        };
        if text.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.extend(form_urlencoded::byte_serialize(text.as_bytes()));
    }
}

/// Looks a metadata variable up: the flat key first (Tyk keys may contain dots, so `a.b` may be
/// a key), then the nested path `a` → `b` through objects (a fix: Tyk only does flat).
pub fn lookup_meta<'m>(metadata: &'m Metadata, name: &str) -> Option<&'m Value> {
    if let Some(value) = metadata.get(name) {
        return Some(value);
    }
    let (first, rest) = name.split_once('.')?;
    let mut value = metadata.get(first)?;
    for segment in rest.split('.') {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

/// Whether `b` may appear in an unbraced variable name segment.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

struct Parser<'s> {
    source: &'s str,
    url: bool,
    parts: Vec<Part>,
    literal: String,
}

impl<'s> Parser<'s> {
    fn new(source: &'s str, url: bool) -> Self {
        Self {
            source,
            url,
            parts: Vec::new(),
            literal: String::new(),
        }
    }

    fn run(mut self) -> Result<Template, TemplateError> {
        let bytes = self.source.as_bytes();
        let mut pos = 0;
        // Start of literal text not yet copied into `self.literal`.
        let mut copied = 0;
        while let Some(found) = bytes[pos..].iter().position(|&b| b == b'$') {
            let dollar = pos + found;
            self.literal.push_str(&self.source[copied..dollar]);
            let (part, end) = self.token(dollar)?;
            match part {
                Some(Part::Capture(_)) if self.in_scheme_or_authority() => {
                    return Err(TemplateError::CaptureInAuthority { offset: dollar });
                }
                Some(part) => self.push_variable(part),
                // Not a variable: the `$` (or `$$`, as one `$`) is literal.
                None => self.literal.push('$'),
            }
            pos = end;
            copied = end;
        }
        self.literal.push_str(&self.source[copied..]);
        self.flush_literal();
        let capacity = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.len(),
                _ => VARIABLE_CAPACITY_GUESS,
            })
            .sum();
        let authority_open = self.url
            && match self.parts.first() {
                Some(Part::Literal(text)) => url_scheme(text)
                    .is_some_and(|scheme| !text[scheme.len() + 3..].contains(['/', '?', '#'])),
                _ => false,
            };
        Ok(Template {
            source: self.source.to_owned(),
            parts: self.parts,
            capacity,
            authority_open,
        })
    }

    /// Reads the token at the `$` at `dollar`: a variable, or `None` for a literal `$`, plus the
    /// offset just past what was consumed.
    fn token(&self, dollar: usize) -> Result<(Option<Part>, usize), TemplateError> {
        let rest = &self.source[dollar + 1..];
        if rest.starts_with('$') {
            return Ok((None, dollar + 2));
        }
        if let Some(braced) = rest.strip_prefix('{') {
            let close = braced
                .find('}')
                .ok_or(TemplateError::Unterminated { offset: dollar })?;
            let part = self.braced(&braced[..close], dollar)?;
            return Ok((Some(part), dollar + 2 + close + 1));
        }
        if self.url {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                let index = capture_index(&rest[..digits], dollar)?;
                return Ok((Some(Part::Capture(index)), dollar + 1 + digits));
            }
        }
        for (namespace, make) in [
            (META, Part::Meta as fn(Box<str>) -> Part),
            (CONTEXT, Part::Context),
        ] {
            let Some(after) = rest
                .strip_prefix(namespace)
                .and_then(|after| after.strip_prefix('.'))
            else {
                continue;
            };
            let len = unbraced_name_len(after.as_bytes());
            if len == 0 {
                // `$tyk_meta.` followed by no name: not a variable, so literal text.
                return Ok((None, dollar + 1));
            }
            let end = dollar + 1 + namespace.len() + 1 + len;
            return Ok((Some(make(after[..len].into())), end));
        }
        Ok((None, dollar + 1))
    }

    /// The inside of `${...}`.
    fn braced(&self, inner: &str, dollar: usize) -> Result<Part, TemplateError> {
        if self.url && !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Part::Capture(capture_index(inner, dollar)?));
        }
        let (namespace, name) = inner.split_once('.').unwrap_or((inner, ""));
        let make: fn(Box<str>) -> Part = match namespace {
            META => Part::Meta,
            CONTEXT => Part::Context,
            _ => {
                return Err(TemplateError::UnknownNamespace {
                    offset: dollar,
                    namespace: namespace.to_owned(),
                });
            }
        };
        if name.is_empty() {
            return Err(TemplateError::EmptyName { offset: dollar });
        }
        Ok(make(name.into()))
    }

    /// Whether text written next would land in the scheme or authority of an absolute URL
    /// template: the template so far starts with a literal `scheme://` and has no `/`, `?` or
    /// `#` after it yet.
    fn in_scheme_or_authority(&self) -> bool {
        let mut written = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => written.push_str(text),
                // A variable is neither a scheme character nor a delimiter.
                _ => written.push('\0'),
            }
        }
        written.push_str(&self.literal);
        match url_scheme(&written) {
            Some(scheme) => !written[scheme.len() + 3..].contains(['/', '?', '#']),
            None => false,
        }
    }

    fn push_variable(&mut self, part: Part) {
        self.flush_literal();
        self.parts.push(part);
    }

    fn flush_literal(&mut self) {
        if !self.literal.is_empty() {
            let text = std::mem::take(&mut self.literal);
            self.parts.push(Part::Literal(text.into_boxed_str()));
        }
    }
}

fn capture_index(digits: &str, dollar: usize) -> Result<usize, TemplateError> {
    digits
        .parse()
        .map_err(|_| TemplateError::CaptureTooLarge { offset: dollar })
}

/// Length of the unbraced name at the start of `bytes`: segments of `[A-Za-z0-9_-]` joined by
/// single dots. A trailing dot is not part of the name (a fix: Tyk reads `$tyk_meta.name.` as
/// key `name.`).
fn unbraced_name_len(bytes: &[u8]) -> usize {
    let mut len = 0;
    loop {
        let segment = bytes[len..]
            .iter()
            .take_while(|&&b| is_name_byte(b))
            .count();
        if segment == 0 {
            // Only reachable on the first segment: later ones are checked before the dot.
            return len;
        }
        len += segment;
        match bytes.get(len..len + 2) {
            Some([b'.', next]) if is_name_byte(*next) => len += 1,
            _ => return len,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    /// A request as templates see it.
    #[derive(Default)]
    struct TestVars {
        metadata: Option<Metadata>,
        context: HashMap<String, String>,
        captures: Vec<String>,
    }

    impl TestVars {
        fn meta(value: Value) -> Self {
            let Value::Object(metadata) = value else {
                panic!("metadata must be an object");
            };
            Self {
                metadata: Some(metadata),
                ..Self::default()
            }
        }

        fn with_context(mut self, name: &str, value: &str) -> Self {
            self.context.insert(name.to_owned(), value.to_owned());
            self
        }

        fn with_captures(mut self, captures: &[&str]) -> Self {
            self.captures = captures.iter().map(|&c| c.to_owned()).collect();
            self
        }
    }

    impl Vars for TestVars {
        fn metadata(&self) -> Option<&Metadata> {
            self.metadata.as_ref()
        }

        fn context(&self, name: &str) -> Option<Cow<'_, str>> {
            self.context.get(name).map(|v| Cow::Borrowed(v.as_str()))
        }

        fn capture(&self, index: usize) -> Option<&str> {
            self.captures.get(index).map(String::as_str)
        }
    }

    fn text(template: &str, vars: &TestVars) -> String {
        Template::parse(template).unwrap().render_text(vars).value
    }

    fn header(template: &str, vars: &TestVars) -> Result<Rendered<http::HeaderValue>, RenderError> {
        Template::parse(template).unwrap().render_header(vars)
    }

    /// The single-variable fast path of `render_header` answers exactly what rendering the
    /// text and then checking it as a header value does.
    #[test]
    fn header_fast_path_matches_the_general_path() {
        let vars = TestVars::meta(json!({
            "s": "plain", "n": 42, "null": null, "b": true, "o": {"a": {"b": "deep"}},
            "crlf": "a\r\nb", "del": "a\u{7f}", "nul": "a\u{0}", "utf8": "é", "empty": ""
        }));
        for name in [
            "s", "n", "null", "b", "o", "o.a.b", "crlf", "del", "nul", "utf8", "empty", "missing",
        ] {
            let template = Template::parse(&format!("${{tyk_meta.{name}}}")).unwrap();
            let general = template.render_text(&vars);
            let expected = http::HeaderValue::from_str(&general.value)
                .map(|value| (value, general.missing))
                .map_err(|_| RenderError::InvalidHeaderValue);
            let fast = template
                .render_header(&vars)
                .map(|rendered| (rendered.value, rendered.missing));
            assert_eq!(fast, expected, "{name}");
        }
        // Without metadata at all.
        let none = TestVars::default();
        let rendered = header("$tyk_meta.s", &none).unwrap();
        assert_eq!(
            (rendered.value.to_str().unwrap(), rendered.missing),
            ("", true)
        );
    }

    fn url(template: &str, vars: &TestVars) -> Result<String, RenderError> {
        Template::parse_url(template)
            .unwrap()
            .render_url(vars)
            .map(|r| r.value)
    }

    fn value(value: Value) -> String {
        let mut out = String::new();
        render_value(&value, &mut out);
        out
    }

    // --- variables.md vectors ---

    #[test]
    fn header_renders_string_metadata() {
        let vars = TestVars::meta(json!({"uid": "u-17"}));
        let rendered = header("$tyk_meta.uid", &vars).unwrap();
        assert_eq!(rendered.value, "u-17");
        assert!(!rendered.missing);
    }

    #[test]
    fn integers_floats_and_bools_render_as_text() {
        let vars = TestVars::meta(json!({"n": 42, "f": 12.5, "b": true}));
        assert_eq!(
            text("n=$tyk_meta.n f=$tyk_meta.f b=$tyk_meta.b", &vars),
            "n=42 f=12.5 b=true"
        );
    }

    #[test]
    fn shorter_key_does_not_corrupt_longer_key() {
        let vars = TestVars::meta(json!({"a": "X", "ab": "Y"}));
        assert_eq!(
            header("/$tyk_meta.a/$tyk_meta.ab", &vars).unwrap().value,
            "/X/Y"
        );
    }

    #[test]
    fn missing_key_renders_empty_and_is_flagged() {
        let rendered = Template::parse("[$tyk_meta.missing]")
            .unwrap()
            .render_text(&TestVars::meta(json!({})));
        assert_eq!(rendered.value, "[]");
        assert!(rendered.missing);
    }

    #[test]
    fn trailing_dot_is_literal_text_not_part_of_the_name() {
        let vars = TestVars::meta(json!({"tier": "gold"}));
        assert_eq!(text("$tyk_meta.tier.", &vars), "gold.");
        assert_eq!(text("Hello $tyk_meta.tier.", &vars), "Hello gold.");
    }

    #[test]
    fn dotted_name_reads_nested_objects_and_objects_render_as_compact_json() {
        let vars = TestVars::meta(json!({"o": {"k": "v"}}));
        assert_eq!(text("$tyk_meta.o.k", &vars), "v");
        assert_eq!(text("$tyk_meta.o", &vars), r#"{"k":"v"}"#);
    }

    #[test]
    fn flat_dotted_key_wins_over_nested_path() {
        let vars = TestVars::meta(json!({"o.k": "flat", "o": {"k": "nested"}}));
        assert_eq!(text("$tyk_meta.o.k", &vars), "flat");
    }

    #[test]
    fn array_elements_are_rendered_and_joined_with_commas() {
        let vars = TestVars::meta(json!({"l": ["a", "b", 3]}));
        assert_eq!(text("$tyk_meta.l", &vars), "a,b,3");
    }

    #[test]
    fn url_path_variable_is_percent_encoded_and_query_variable_form_encoded() {
        let vars = TestVars::meta(json!({"uid": "u 1/2"}));
        assert_eq!(
            url("/users/$tyk_meta.uid?u=$tyk_meta.uid", &vars).unwrap(),
            "/users/u%201%2F2?u=u+1%2F2"
        );
    }

    #[test]
    fn header_value_with_crlf_is_rejected_not_split() {
        let vars = TestVars::meta(json!({"x": "a\r\nSet-Cookie: s=1"}));
        assert_eq!(
            header("$tyk_meta.x", &vars),
            Err(RenderError::InvalidHeaderValue)
        );
        assert_eq!(
            RenderError::InvalidHeaderValue.to_string(),
            "Invalid header value"
        );
    }

    #[test]
    fn client_header_containing_a_variable_stays_literal() {
        let vars = TestVars::meta(json!({"secret": "s3cr3t"}))
            .with_context("headers_X_Name", "$tyk_meta.secret");
        assert_eq!(
            text("hi $tyk_context.headers_X_Name", &vars),
            "hi $tyk_meta.secret"
        );
    }

    // --- rewrite.md vectors ---

    #[test]
    fn whole_path_capture_keeps_the_original_query() {
        let vars =
            TestVars::default().with_captures(&["/foo/bar?param1=this", "/foo/bar?param1=this"]);
        assert_eq!(
            url("$1&newParam=that", &vars).unwrap(),
            "/foo/bar?param1=this&newParam=that"
        );
    }

    #[test]
    fn metadata_and_capture_combine_in_a_rewrite_target() {
        let vars = TestVars::meta(json!({"shard": "eu-2"})).with_captures(&["/orders/7", "7"]);
        assert_eq!(
            url("/shards/$tyk_meta.shard/orders/$1", &vars).unwrap(),
            "/shards/eu-2/orders/7"
        );
    }

    // --- syntax ---

    #[test]
    fn unterminated_brace_is_a_parse_error_with_its_offset() {
        let err = Template::parse("ab ${tyk_meta.x").unwrap_err();
        assert_eq!(err, TemplateError::Unterminated { offset: 3 });
        assert!(err.to_string().contains("byte 3"), "{err}");
    }

    #[test]
    fn unknown_braced_namespace_is_a_parse_error() {
        let err = Template::parse("${foo.bar}").unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownNamespace {
                offset: 0,
                namespace: "foo".into()
            }
        );
        assert!(err.to_string().contains("`foo`"), "{err}");
        assert!(matches!(
            Template::parse("${1}"),
            Err(TemplateError::UnknownNamespace { .. })
        ));
    }

    #[test]
    fn empty_braced_name_is_a_parse_error() {
        assert_eq!(
            Template::parse("x${tyk_meta.}"),
            Err(TemplateError::EmptyName { offset: 1 })
        );
        assert_eq!(
            Template::parse("${tyk_context}"),
            Err(TemplateError::EmptyName { offset: 0 })
        );
    }

    #[test]
    fn braced_name_may_contain_any_character() {
        let vars = TestVars::meta(json!({"https://example.com/claims/role": "admin"}));
        assert_eq!(
            text("role=${tyk_meta.https://example.com/claims/role}!", &vars),
            "role=admin!"
        );
    }

    #[test]
    fn braced_context_variable() {
        let vars = TestVars::default().with_context("request_data_a.b", "1");
        assert_eq!(text("${tyk_context.request_data_a.b}x", &vars), "1x");
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        let vars = TestVars::meta(json!({"uid": "u"}));
        assert_eq!(
            text("$$tyk_meta.uid costs $$5", &vars),
            "$tyk_meta.uid costs $5"
        );
        assert!(Template::parse("$$tyk_meta.uid").unwrap().is_literal());
    }

    #[test]
    fn other_dollars_are_literal() {
        let vars = TestVars::meta(json!({"uid": "u"}));
        assert_eq!(
            text("$ $x $tyk_meta. $tyk_metadata.uid $tyk_meta.uid$", &vars),
            "$ $x $tyk_meta. $tyk_metadata.uid u$"
        );
    }

    #[test]
    fn dollar_number_is_literal_in_text_but_a_capture_in_urls() {
        let vars = TestVars::default().with_captures(&["whole", "one"]);
        let text_template = Template::parse("$1").unwrap();
        assert!(text_template.is_literal());
        assert_eq!(text_template.render_text(&vars).value, "$1");
        let url_template = Template::parse_url("/$1").unwrap();
        assert_eq!(
            url_template.variables().collect::<Vec<_>>(),
            [Variable::Capture(1)]
        );
        assert_eq!(url_template.render_url(&vars).unwrap().value, "/one");
    }

    #[test]
    fn capture_number_takes_all_digits_and_braces_separate_it() {
        let captures: Vec<String> = (0..13).map(|i| format!("g{i}")).collect();
        let refs: Vec<&str> = captures.iter().map(String::as_str).collect();
        let vars = TestVars::default().with_captures(&refs);
        assert_eq!(url("/$12/$0", &vars).unwrap(), "/g12/g0");
        assert_eq!(url("/${1}2", &vars).unwrap(), "/g12");
    }

    #[test]
    fn oversized_capture_number_is_a_parse_error() {
        assert_eq!(
            Template::parse_url("/$99999999999999999999999"),
            Err(TemplateError::CaptureTooLarge { offset: 1 })
        );
    }

    #[test]
    fn unknown_capture_renders_empty_and_is_flagged() {
        let vars = TestVars::default().with_captures(&["/a"]);
        let rendered = Template::parse_url("/x/$3/y")
            .unwrap()
            .render_url(&vars)
            .unwrap();
        assert_eq!(rendered.value, "/x//y");
        assert!(rendered.missing);
    }

    #[test]
    fn captured_text_is_never_expanded_or_encoded() {
        let vars = TestVars::meta(json!({"secret": "s3cr3t"}))
            .with_captures(&["", "$tyk_meta.secret a b"]);
        assert_eq!(url("/p/$1", &vars).unwrap(), "/p/$tyk_meta.secret a b");
    }

    #[test]
    fn missing_context_value_renders_empty_and_is_flagged() {
        let rendered = Template::parse("id=$tyk_context.request_id")
            .unwrap()
            .render_text(&TestVars::meta(json!({})));
        assert_eq!(rendered.value, "id=");
        assert!(rendered.missing);
    }

    #[test]
    fn no_session_renders_metadata_empty_and_is_flagged() {
        let rendered = header("u=$tyk_meta.uid", &TestVars::default()).unwrap();
        assert_eq!(rendered.value, "u=");
        assert!(rendered.missing);
    }

    #[test]
    fn present_null_value_is_not_missing() {
        let rendered = Template::parse("[$tyk_meta.n]")
            .unwrap()
            .render_text(&TestVars::meta(json!({"n": null})));
        assert_eq!(rendered.value, "[]");
        assert!(!rendered.missing);
    }

    #[test]
    fn variables_are_listed_in_order_and_literals_merged() {
        let template =
            Template::parse("a$$b $tyk_context.path-x ${tyk_meta.k/1}$tyk_meta.z.").unwrap();
        assert_eq!(
            template.variables().collect::<Vec<_>>(),
            [
                Variable::Context("path-x"),
                Variable::Meta("k/1"),
                Variable::Meta("z"),
            ]
        );
        assert!(!template.is_literal());
        assert_eq!(
            template.parts,
            [
                Part::Literal("a$b ".into()),
                Part::Context("path-x".into()),
                Part::Literal(" ".into()),
                Part::Meta("k/1".into()),
                Part::Meta("z".into()),
                Part::Literal(".".into()),
            ]
        );
        assert_eq!(
            template.source(),
            "a$$b $tyk_context.path-x ${tyk_meta.k/1}$tyk_meta.z."
        );
    }

    #[test]
    fn double_dot_in_name_ends_the_name() {
        let vars = TestVars::meta(json!({"a": "A"}));
        assert_eq!(text("$tyk_meta.a..b", &vars), "A..b");
    }

    #[test]
    fn text_without_variables_is_literal() {
        let template = Template::parse("plain text").unwrap();
        assert!(template.is_literal());
        assert_eq!(template.variables().count(), 0);
        assert_eq!(
            template.render_text(&TestVars::default()),
            Rendered {
                value: "plain text".to_owned(),
                missing: false
            }
        );
    }

    // --- value rendering ---

    #[test]
    fn floats_render_shortest_without_exponent() {
        assert_eq!(value(json!(0.1)), "0.1");
        assert_eq!(value(json!(12.5)), "12.5");
        assert_eq!(value(json!(1e21)), "1000000000000000000000");
        assert_eq!(value(json!(1.5e-7)), "0.00000015");
        assert_eq!(value(json!(-3.25)), "-3.25");
    }

    #[test]
    fn integers_render_in_decimal() {
        assert_eq!(value(json!(1234567)), "1234567");
        assert_eq!(value(json!(-42)), "-42");
        assert_eq!(value(json!(u64::MAX)), u64::MAX.to_string());
    }

    #[test]
    fn scalars_nulls_and_nested_values_render() {
        assert_eq!(value(json!(false)), "false");
        assert_eq!(value(json!(null)), "");
        // Arrays as Tyk's `valToStr` renders them (gateway/mw_url_rewrite.go): each element
        // form-encoded (`url.QueryEscape`), empty ones dropped; this used to be `1,2,3,,{"a":1}`.
        assert_eq!(
            value(json!([1, [2, 3], null, "", {"a": 1}])),
            "1,2%2C3,%7B%22a%22%3A1%7D"
        );
    }

    /// Tyk's `TestValToStr` (gateway/mw_url_rewrite_test.go).
    #[test]
    fn arrays_render_as_tyk_val_to_str() {
        assert_eq!(
            value(json!(["abc", 456, 12.22, 123452342.0, "abc,def", 13])),
            "abc,456,12.22,123452342,abc%2Cdef,13"
        );
        assert_eq!(value(json!(["", "a b", null, "é"])), "a+b,%C3%A9");
        assert_eq!(value(json!([])), "");
    }

    #[test]
    fn lookup_prefers_flat_key_then_nested_path() {
        let Value::Object(meta) = json!({"a": {"b": {"c": 1}}, "a.b": {"c": 2}, "s": "x"}) else {
            unreachable!()
        };
        assert_eq!(lookup_meta(&meta, "a.b"), Some(&json!({"c": 2})));
        assert_eq!(lookup_meta(&meta, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup_meta(&meta, "s.x"), None);
        assert_eq!(lookup_meta(&meta, "nope"), None);
    }

    // --- URL encoding ---

    #[test]
    fn dot_dot_value_in_path_is_refused() {
        let vars = TestVars::meta(json!({"p": ".."}));
        assert_eq!(
            url("/files/$tyk_meta.p/x", &vars),
            Err(RenderError::DotSegment)
        );
        assert_eq!(
            url("/files/$tyk_meta.p", &vars),
            Err(RenderError::DotSegment)
        );
        assert_eq!(
            url("/files/$tyk_meta.p?q=1", &vars),
            Err(RenderError::DotSegment)
        );
    }

    #[test]
    fn single_dot_value_in_path_is_refused() {
        let vars = TestVars::meta(json!({"p": "."}));
        assert_eq!(
            url("/$tyk_meta.p/admin", &vars),
            Err(RenderError::DotSegment)
        );
    }

    #[test]
    fn dot_segment_built_from_two_variables_is_refused() {
        let vars = TestVars::meta(json!({"p": "."}));
        assert_eq!(
            url("/$tyk_meta.p$tyk_meta.p/admin", &vars),
            Err(RenderError::DotSegment)
        );
    }

    #[test]
    fn dot_dot_value_in_query_is_fine() {
        let vars = TestVars::meta(json!({"p": ".."}));
        assert_eq!(url("/files?p=$tyk_meta.p", &vars).unwrap(), "/files?p=..");
    }

    #[test]
    fn dots_inside_a_segment_and_literal_dots_are_fine() {
        let vars = TestVars::meta(json!({"p": "..", "v": "1.2"}));
        assert_eq!(url("/v$tyk_meta.v/x", &vars).unwrap(), "/v1.2/x");
        assert_eq!(url("/a$tyk_meta.p/x", &vars).unwrap(), "/a../x");
        assert_eq!(url("/a/../b", &vars).unwrap(), "/a/../b");
    }

    #[test]
    fn traversal_value_is_refused_though_its_slash_is_encoded() {
        // `..%2Fadmin` is one segment for RFC 3986, but `..` then `admin` for an upstream that
        // decodes `%2F` (or `%5C`, `\\`) before it normalises.
        for p in ["../admin", r"..\admin", "a/./b", "x/..", "./"] {
            let vars = TestVars::meta(json!({ "p": p }));
            assert_eq!(
                url("/files/$tyk_meta.p", &vars),
                Err(RenderError::DotSegment),
                "{p}"
            );
        }
        // A slash that hides no dot segment stays encoded in one segment.
        let vars = TestVars::meta(json!({"p": "a/b..c", "pct": "%2e%2e"}));
        assert_eq!(url("/files/$tyk_meta.p", &vars).unwrap(), "/files/a%2Fb..c");
        // Percent signs are data: `%2e%2e` is sent as `%252e%252e`.
        assert_eq!(
            url("/files/$tyk_meta.pct", &vars).unwrap(),
            "/files/%252e%252e"
        );
    }

    #[test]
    fn captured_dot_segments_are_refused_in_every_spelling() {
        for captured in [
            "..",
            ".",
            "%2e%2e",
            "%2E.",
            ".%2e",
            r"..\x",
            "..%5cx",
            "..%5Cx",
            "..%2fx",
            "a/../b",
            "a/%2e%2e/b",
            "a/..",
        ] {
            let vars = TestVars::default().with_captures(&["", captured]);
            assert_eq!(
                url("/shards/eu-1/$1", &vars),
                Err(RenderError::CapturedDotSegment),
                "{captured}"
            );
        }
        // Half a segment captured can make one with the literal text around it.
        let vars = TestVars::default().with_captures(&["", "."]);
        assert_eq!(
            url("/shards/.$1/x", &vars),
            Err(RenderError::CapturedDotSegment)
        );
        // Dots that are not a whole segment, and dots in the query, are fine.
        let vars = TestVars::default().with_captures(&["", "v1.2/a..b?x=../.."]);
        assert_eq!(
            url("/shards/$1", &vars).unwrap(),
            "/shards/v1.2/a..b?x=../.."
        );
        let vars = TestVars::default().with_captures(&["", ".."]);
        assert_eq!(url("/shards?x=$1", &vars).unwrap(), "/shards?x=..");
    }

    #[test]
    fn a_capture_in_the_scheme_or_authority_is_a_parse_error() {
        for (source, offset) in [
            ("http://backend.internal$1", 23),
            ("https://$1/x", 8),
            ("http://h:${1}/x", 9),
            ("HTTP://user@$2/", 12),
            ("http://$tyk_meta.h$1/", 18),
        ] {
            assert_eq!(
                Template::parse_url(source),
                Err(TemplateError::CaptureInAuthority { offset }),
                "{source}"
            );
        }
        // After the authority, or in a template that is not absolute as written: fine.
        for source in [
            "http://backend.internal/$1",
            "http://backend.internal?x=$1",
            "http://backend.internal#$1",
            "$1://backend.internal$2",
            "/http://backend$1",
            "$1",
        ] {
            assert!(Template::parse_url(source).is_ok(), "{source}");
        }
    }

    #[test]
    fn url_scheme_is_the_literal_scheme_only() {
        let scheme = |source: &str| {
            Template::parse_url(source)
                .unwrap()
                .url_scheme()
                .map(str::to_owned)
        };
        assert_eq!(scheme("http://h/x").as_deref(), Some("http"));
        assert_eq!(scheme("HTTPS://$tyk_meta.h/x").as_deref(), Some("HTTPS"));
        assert_eq!(scheme("$tyk_meta.s://h/x"), None);
        assert_eq!(scheme("/a://b"), None);
        assert_eq!(scheme("http:/h"), None);
    }

    #[test]
    fn path_encoding_keeps_only_unreserved_characters() {
        let vars = TestVars::default().with_context("v", "aZ0-._~/?#% é+");
        assert_eq!(
            url("/$tyk_context.v", &vars).unwrap(),
            "/aZ0-._~%2F%3F%23%25%20%C3%A9%2B"
        );
    }

    #[test]
    fn query_encoding_is_form_encoding() {
        let vars = TestVars::default().with_context("v", "a b&c=d/é");
        assert_eq!(
            url("/p?x=$tyk_context.v", &vars).unwrap(),
            "/p?x=a+b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn non_string_metadata_is_rendered_then_encoded() {
        // The array is rendered as Tyk renders it (`a+b,2`), then encoded for where it lands, so
        // the result is Tyk's (`url.QueryEscape` of the joined text); this used to be
        // `/a%20b%2C2/0.5?l=a+b%2C2`.
        let vars = TestVars::meta(json!({"l": ["a b", "", 2], "f": 0.5}));
        assert_eq!(
            url("/$tyk_meta.l/$tyk_meta.f?l=$tyk_meta.l", &vars).unwrap(),
            "/a%2Bb%2C2/0.5?l=a%2Bb%2C2"
        );
    }

    // --- per-key upstreams ---

    fn target(source: &str, vars: &TestVars) -> Result<(String, bool), RenderError> {
        let rendered = Template::parse_url(source).unwrap().render_target(vars)?;
        Ok((rendered.value, rendered.absolute))
    }

    #[test]
    fn a_leading_metadata_url_is_the_upstream() {
        for (upstream, want) in [
            ("http://orders.internal", "http://orders.internal/orders/7"),
            (
                "HTTPS://orders.internal:8443",
                "HTTPS://orders.internal:8443/orders/7",
            ),
            ("http://[::1]:8080/v2", "http://[::1]:8080/v2/orders/7"),
            ("http://h/v2/", "http://h/v2//orders/7"),
        ] {
            let vars =
                TestVars::meta(json!({ "upstream": upstream })).with_captures(&["/orders/7", "7"]);
            assert_eq!(
                target("$tyk_meta.upstream/orders/$1", &vars),
                Ok((want.to_owned(), true)),
                "{upstream}"
            );
        }
    }

    #[test]
    fn a_leading_metadata_value_that_is_not_a_url_stays_a_path_segment() {
        for (upstream, want) in [
            ("orders.internal", "orders.internal/x"),
            ("ftp://h", "ftp%3A%2F%2Fh/x"),
            ("httpx", "httpx/x"),
            ("https", "https/x"),
        ] {
            let vars = TestVars::meta(json!({ "upstream": upstream }));
            assert_eq!(
                target("$tyk_meta.upstream/x", &vars),
                Ok((want.to_owned(), false)),
                "{upstream}"
            );
        }
        // Anywhere but first, a URL value is encoded as any value (Tyk leaves it raw).
        let vars = TestVars::meta(json!({"u": "http://h/a b"}));
        assert_eq!(
            target("/r/$tyk_meta.u", &vars),
            Ok(("/r/http%3A%2F%2Fh%2Fa%20b".to_owned(), false))
        );
        // `$tyk_context` never names an upstream: clients choose some context values.
        let vars = TestVars::default().with_context("u", "http://h");
        assert_eq!(
            target("$tyk_context.u/x", &vars),
            Ok(("http%3A%2F%2Fh/x".to_owned(), false))
        );
    }

    #[test]
    fn a_malformed_upstream_is_refused() {
        for upstream in [
            "http://user@h",
            "http://h?x=1",
            "http://h/x?y",
            "http://h#f",
            "http://",
            "http://h:",
            "http://h:123456",
            "http://h:80x",
            "http://h/../admin",
            "http://h/%2e%2e/admin",
            "http://h/a\\..\\b",
            "http://h/a b",
            "http://h/\"x",
            "http://h\r\n",
            "http://../x",
        ] {
            let vars = TestVars::meta(json!({ "upstream": upstream }));
            assert_eq!(
                target("$tyk_meta.upstream/x", &vars),
                Err(RenderError::InvalidUpstream),
                "{upstream}"
            );
        }
    }

    #[test]
    fn a_capture_in_an_authority_opened_by_metadata_is_refused() {
        let vars =
            TestVars::meta(json!({"upstream": "http://h"})).with_captures(&["", "@evil.example"]);
        assert_eq!(
            target("$tyk_meta.upstream$1", &vars),
            Err(RenderError::CaptureInAuthority)
        );
        assert_eq!(
            target("$tyk_meta.upstream:$1/x", &vars),
            Err(RenderError::CaptureInAuthority)
        );
        // After the authority, captures are path as ever.
        assert_eq!(
            target("$tyk_meta.upstream/$1", &vars),
            Ok(("http://h/@evil.example".to_owned(), true))
        );
    }

    #[test]
    fn metadata_in_a_written_authority_may_carry_a_port() {
        for (host, want) in [
            ("orders.internal:8080", "http://orders.internal:8080/x"),
            ("orders.internal", "http://orders.internal/x"),
            ("[::1]:8080", "http://[::1]:8080/x"),
            // Not `host[:port]`: encoded as before, so no userinfo and no path.
            ("evil@orders.internal", "http://evil%40orders.internal/x"),
            ("h/admin", "http://h%2Fadmin/x"),
            ("h:port", "http://h%3Aport/x"),
        ] {
            let vars = TestVars::meta(json!({ "host": host }));
            assert_eq!(
                target("http://$tyk_meta.host/x", &vars),
                Ok((want.to_owned(), false)),
                "{host}"
            );
        }
        let vars = TestVars::meta(json!({"host": ".."}));
        assert_eq!(
            target("http://$tyk_meta.host/x", &vars),
            Err(RenderError::DotSegment)
        );
        // A context value is always encoded there.
        let vars = TestVars::default().with_context("h", "orders.internal:8080");
        assert_eq!(
            target("http://$tyk_context.h/x", &vars),
            Ok(("http://orders.internal%3A8080/x".to_owned(), false))
        );
    }

    // --- headers ---

    #[test]
    fn header_value_with_nul_or_lf_is_rejected() {
        for bad in ["a\0b", "a\nb", "a\rb", "a\x7fb"] {
            let vars = TestVars::default().with_context("v", bad);
            assert_eq!(
                header("$tyk_context.v", &vars),
                Err(RenderError::InvalidHeaderValue),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn header_value_keeps_utf8_and_tabs() {
        let vars = TestVars::default().with_context("v", "é\tok");
        let rendered = header("$tyk_context.v", &vars).unwrap();
        assert_eq!(rendered.value.as_bytes(), "é\tok".as_bytes());
    }
}
