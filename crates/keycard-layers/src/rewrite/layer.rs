//! The rewrite's configuration: the builder, the compiled rules and the layer (config only).

use std::sync::Arc;

use keycard_core::vars::Variable;
use regex::RegexSet;

use super::rule::{CompiledRule, RewriteConfigError, RewriteRule};

/// The default limit on a body buffered for a payload trigger: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Builds a [`UrlRewriteLayer`] from [`RewriteRule`]s. The first rule whose `match_pattern`
/// matches wins; later rules are not consulted.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the layer"]
pub struct UrlRewriteBuilder {
    rules: Vec<RewriteRule>,
    body_limit: usize,
    allowed_hosts: Option<Vec<String>>,
    ignore_endpoint_case: bool,
}

impl Default for UrlRewriteBuilder {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            allowed_hosts: None,
            ignore_endpoint_case: false,
        }
    }
}

impl UrlRewriteBuilder {
    /// Adds a rule after the ones already added.
    pub fn rule(mut self, rule: RewriteRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules in order, e.g. the `url_rewrites` of a Tyk API definition read with serde.
    pub fn extend_rules(mut self, rules: impl IntoIterator<Item = RewriteRule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// The most bytes of body a payload trigger buffers; a larger body is refused with 413
    /// `{"error":"Request body too large"}`. Only requests matched by a rule with a payload
    /// trigger are buffered.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The hosts absolute targets (`http://host/...`) may reach: `host` or `host:port`
    /// (`[::1]:8080` for IPv6), the host case-insensitive. An entry matches host **and** port;
    /// without a port it stands for the target scheme's default port (80 for `http`, 443 for
    /// `https`), so `cache.internal` allows `http://cache.internal/` but not
    /// `http://cache.internal:6379/`. A target outside the list is refused with 500
    /// `{"error":"Rewrite target not allowed"}`. Per-key upstreams (a target led by a
    /// `$tyk_meta` URL, see the [module docs](super#absolute-targets)) are held to the same list,
    /// and none is allowed without one.
    ///
    /// Required as soon as a rule or trigger has an absolute target: [`build`](Self::build)
    /// fails with [`RewriteConfigError::AllowListRequired`] without it (**differs from Tyk**,
    /// which sends a rewrite to any host). An entry that is not `host` or `host:port` fails the
    /// build with [`RewriteConfigError::AllowedHost`]. May be called more than once; the lists
    /// add up.
    pub fn allow_hosts<I>(mut self, hosts: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.allowed_hosts
            .get_or_insert_with(Vec::new)
            .extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Matches the rules' endpoint [`path`](RewriteRule::path)s case-insensitively (Tyk's
    /// gateway option `ignore_endpoint_case`; default: case-sensitive, as in Tyk). The
    /// `match_pattern`s stay as written: add `(?i)` to one to make it case-insensitive.
    pub fn ignore_endpoint_case(mut self, ignore: bool) -> Self {
        self.ignore_endpoint_case = ignore;
        self
    }

    /// Compiles every regex and template; disabled rules are left out.
    ///
    /// # Errors
    /// A regex or template that does not compile, a capture in an absolute target's scheme or
    /// authority, an absolute target without [`allow_hosts`](Self::allow_hosts), an allow-list
    /// entry that is not `host` or `host:port`, and the other [`RewriteConfigError`]s.
    pub fn build(self) -> Result<UrlRewriteLayer, RewriteConfigError> {
        let enabled: Vec<(usize, &RewriteRule)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| !rule.is_disabled())
            .collect();
        let rules = enabled
            .iter()
            .map(|(index, rule)| CompiledRule::compile(*index, rule, self.ignore_endpoint_case))
            .collect::<Result<Vec<_>, _>>()?;
        let set = RegexSet::new(enabled.iter().map(|(_, rule)| rule.match_pattern())).map_err(
            |error| RewriteConfigError::Regex {
                at: "the rule set".to_owned(),
                message: error.to_string(),
            },
        )?;
        let allowed_hosts = self
            .allowed_hosts
            .iter()
            .flatten()
            .map(|entry| AllowedHost::parse(entry))
            .collect::<Result<Vec<_>, _>>()?;
        let targets = || {
            rules.iter().flat_map(|rule| {
                std::iter::once(&rule.target).chain(rule.triggers.iter().map(|t| &t.target))
            })
        };
        if allowed_hosts.is_empty()
            && let Some(target) = targets().find(|target| target.absolute)
        {
            return Err(RewriteConfigError::AllowListRequired {
                at: target.at.clone(),
            });
        }
        let uses_request_id = rules.iter().any(|rule| {
            let context_names = targets()
                .flat_map(|target| target.template.variables())
                .filter_map(|variable| match variable {
                    Variable::Context(name) => Some(name),
                    _ => None,
                });
            let trigger_names = rule
                .triggers
                .iter()
                .flat_map(|trigger| trigger.context.iter().map(|(name, _)| name.as_str()));
            context_names
                .chain(trigger_names)
                .any(|name| name == "request_id")
        });
        Ok(UrlRewriteLayer {
            config: Arc::new(Config {
                set,
                rules,
                body_limit: self.body_limit,
                allowed_hosts,
                uses_request_id,
            }),
        })
    }
}

#[derive(Debug)]
pub(super) struct Config {
    /// Every rule's `match_pattern`, in rule order: one pass finds the candidates.
    pub(super) set: RegexSet,
    pub(super) rules: Vec<CompiledRule>,
    pub(super) body_limit: usize,
    /// Where absolute targets may go; never empty when a rule has one.
    pub(super) allowed_hosts: Vec<AllowedHost>,
    pub(super) uses_request_id: bool,
}

/// An [`allow_hosts`](UrlRewriteBuilder::allow_hosts) entry.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AllowedHost {
    /// Lowercase; an IPv6 address in brackets, as [`http::Uri::host`] has it.
    host: String,
    /// `None`: the target scheme's default port.
    port: Option<u16>,
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<Self, RewriteConfigError> {
        let invalid = || RewriteConfigError::AllowedHost {
            entry: entry.to_owned(),
        };
        let (host, port) = match entry.strip_prefix('[') {
            Some(ipv6) => {
                let (address, rest) = ipv6.split_once(']').ok_or_else(invalid)?;
                if address.is_empty()
                    || !address
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return Err(invalid());
                }
                let port = match rest {
                    "" => None,
                    rest => Some(rest.strip_prefix(':').ok_or_else(invalid)?),
                };
                (&entry[..address.len() + 2], port)
            }
            None => {
                let (host, port) = match entry.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (entry, None),
                };
                let name_byte = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
                if host.is_empty() || !host.bytes().all(name_byte) {
                    return Err(invalid());
                }
                (host, port)
            }
        };
        let port = match port {
            None => None,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Some(
                    digits
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or_else(invalid)?,
                )
            }
            Some(_) => return Err(invalid()),
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a target at `host` and `port` (`default_port` when the target names none) is
    /// this entry; an entry without a port stands for `default_port` too.
    pub(super) fn allows(&self, host: &str, port: Option<u16>, default_port: u16) -> bool {
        self.host.eq_ignore_ascii_case(host)
            && self.port.unwrap_or(default_port) == port.unwrap_or(default_port)
    }
}

/// Rewrites request URLs; built by [`UrlRewriteBuilder`]. Wrap it around the whole `Router` (see the
/// [module docs](super)).
#[derive(Clone, Debug)]
pub struct UrlRewriteLayer {
    pub(super) config: Arc<Config>,
}

impl UrlRewriteLayer {
    /// An empty rule list, a 1 MiB body limit, and no host allowed for absolute targets.
    pub fn rules() -> UrlRewriteBuilder {
        UrlRewriteBuilder::default()
    }
}
