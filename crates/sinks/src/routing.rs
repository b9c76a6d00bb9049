//! Which sinks receive a matched session: each sink may accept only tickets whose id
//! matches a pattern and only sessions from some sources. Every accepted (sink, note) pair
//! is its own outbox row, delivered independently.

use regex::Regex;
use ticketsync_model::tenant::TenantName;

/// A sink's routing keys as configured: (sink name, ticket-id regex, sources).
pub type RouteKeys<'a> = (&'static str, Option<&'a str>, Option<&'a [String]>);

#[derive(Debug, Clone)]
pub struct Route {
    pub sink: String,
    pub tickets: Option<Regex>,
    pub sources: Option<Vec<String>>,
    /// The tenant whose sink this is (issue 17): only that tenant's sessions are routed here.
    pub tenant: TenantName,
}

impl Route {
    /// A route that accepts everything (a sink without routing keys).
    pub fn all(sink: &str) -> Route {
        Route { sink: sink.into(), tickets: None, sources: None, tenant: TenantName::default() }
    }

    /// `tickets` is a regex over the ticket id; `sources` are source names (`teamviewer`).
    pub fn new(sink: &str, tickets: Option<&str>, sources: Option<&[String]>) -> Result<Route, regex::Error> {
        Ok(Route {
            sink: sink.into(),
            tickets: tickets.map(Regex::new).transpose()?,
            sources: sources.map(|s| s.iter().map(|v| v.to_ascii_lowercase()).collect()),
            tenant: TenantName::default(),
        })
    }

    /// This route as `tenant`'s (a `[[tenants.sinks]]` entry's).
    pub fn for_tenant(mut self, tenant: &TenantName) -> Route {
        self.tenant = tenant.clone();
        self
    }

    /// Whether a session of `tenant` may be routed here at all: the tenant's own sinks only.
    pub fn serves(&self, tenant: &TenantName) -> bool {
        self.tenant == *tenant
    }

    pub fn accepts(&self, source: &str, ticket: &str) -> bool {
        self.tickets.as_ref().is_none_or(|re| re.is_match(ticket))
            && self.sources.as_ref().is_none_or(|s| s.iter().any(|v| v.eq_ignore_ascii_case(source)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_and_source_both_apply() {
        let jsm = Route::new("jsm", Some(r"^INC-?\d+$"), None).unwrap();
        let rm = Route::new("redmine", Some(r"^#?\d+$"), Some(&["teamviewer".to_string()])).unwrap();
        assert!(jsm.accepts("teamviewer", "INC-42") && !jsm.accepts("teamviewer", "42"));
        assert!(
            rm.accepts("TeamViewer", "#42") && !rm.accepts("splashtop", "42") && !rm.accepts("teamviewer", "INC-42")
        );
        assert!(Route::all("webhook").accepts("zoom", "anything"));
    }
}
