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
}

impl Default for UrlRewriteBuilder {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            allowed_hosts: None,
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

    /// Restricts absolute targets (`http://host/...`) to these hosts (`host` or `host:port`,
    /// case-insensitive). A target outside the list is refused with 500
    /// `{"error":"Rewrite target not allowed"}`. Without this call every host is allowed: set it
    /// whenever a host comes from a variable.
    pub fn allow_hosts<I>(mut self, hosts: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let hosts = hosts
            .into_iter()
            .map(|host| host.into().to_ascii_lowercase());
        self.allowed_hosts
            .get_or_insert_with(Vec::new)
            .extend(hosts);
        self
    }

    /// Compiles every regex and template; disabled rules are left out.
    pub fn build(self) -> Result<UrlRewriteLayer, RewriteConfigError> {
        let enabled: Vec<(usize, &RewriteRule)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| !rule.is_disabled())
            .collect();
        let rules = enabled
            .iter()
            .map(|(index, rule)| CompiledRule::compile(*index, rule))
            .collect::<Result<Vec<_>, _>>()?;
        let set = RegexSet::new(enabled.iter().map(|(_, rule)| rule.match_pattern())).map_err(
            |error| RewriteConfigError::Regex {
                at: "the rule set".to_owned(),
                message: error.to_string(),
            },
        )?;
        let uses_request_id = rules.iter().any(|rule| {
            let context_names = std::iter::once(&rule.target)
                .chain(rule.triggers.iter().map(|trigger| &trigger.target))
                .flat_map(|template| template.variables())
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
                allowed_hosts: self.allowed_hosts,
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
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) uses_request_id: bool,
}

/// Rewrites request URLs; built by [`UrlRewriteBuilder`]. Wrap it around the whole `Router` (see the
/// [module docs](super)).
#[derive(Clone, Debug)]
pub struct UrlRewriteLayer {
    pub(super) config: Arc<Config>,
}

impl UrlRewriteLayer {
    /// An empty rule list, a 1 MiB body limit, and any host allowed in absolute targets.
    pub fn rules() -> UrlRewriteBuilder {
        UrlRewriteBuilder::default()
    }
}
