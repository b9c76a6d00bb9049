//! Wiring: the configured sources, sinks and rules, built once from the config.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::matcher::Rule;
use crate::pipeline::{DeliveryPolicy, Sinks};
use crate::sinks::TicketSink;
use crate::sources::Source;
use crate::store::Store;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub sources: Vec<(Arc<dyn Source>, String)>,
    /// The tenant `default`'s sinks (the top-level `[sinks]`), by name.
    pub sinks: Sinks,
    /// The other tenants' sinks (`[[tenants.sinks]]`), by tenant; `default`'s are `sinks`.
    pub tenant_sinks: crate::pipeline::TenantSinks,
    /// Every sink's name, every tenant's.
    pub sink_names: Vec<String>,
    /// Which sinks receive which matched sessions (`tickets`, `sources` keys).
    pub routes: Vec<crate::sinks::routing::Route>,
    pub rules: Vec<Rule>,
    pub policy: DeliveryPolicy,
    /// This instance's name in leases and logs (`daemon.instance_id`, or `<host>:<pid>`).
    pub instance_id: String,
    /// The time-entry policy of each sink with `time_entries = true` (issue 20).
    pub time: Arc<crate::pipeline::time::TimePolicies>,
}

pub async fn open_store(cfg: &Config) -> Result<Store> {
    let password = store_password(cfg)?;
    let store = Store::connect(&cfg.store.url(), Duration::from_millis(cfg.store.busy_timeout_ms), password.as_ref())
        .await
        .with_context(|| store_key(cfg))?;
    // PostgreSQL has no file to keep the token journal beside: it goes where `store.path`
    // points (the state directory), as it would for a SQLite store there.
    let store = match store.file() {
        Some(_) => store,
        None => store.with_journal_base(&cfg.store.path),
    };
    // Every writer of this process appends to the audit chain under the configured key.
    let status = crate::store::audit::use_key(&store, audit_key(cfg)?).await?;
    if let Some(id) = status.started_keyed_at {
        tracing::warn!(row = id, "audit chain keyed (HMAC-SHA256 under store.audit_key) from this row on");
    }
    Ok(store)
}

/// The configured store opened read-only (auditors' commands, `check`, `doctor`): never
/// created, migrated or written.
pub async fn open_store_read_only(cfg: &Config) -> Result<Store> {
    let password = store_password(cfg)?;
    Store::connect_read_only(&cfg.store.url(), password.as_ref()).await.with_context(|| store_key(cfg))
}

/// [`open_store_read_only`], or `None` when there is no database yet (the SQLite file is
/// missing, or PostgreSQL has no schema): what `check` reads before the first start.
pub async fn open_existing_store_read_only(cfg: &Config) -> Result<Option<Store>> {
    match open_store_read_only(cfg).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if not_created(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `e` says the store has not been created yet.
pub fn not_created(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<crate::store::StoreError>(), Some(crate::store::StoreError::NotCreated { .. }))
}

/// `store.url = …` (without a password) or `store.path = …`, whichever names the store.
fn store_key(cfg: &Config) -> String {
    match cfg.store.url {
        Some(_) => format!("store.url = {}", cfg.store.display()),
        None => format!("store.path = {}", cfg.store.path.display()),
    }
}

/// PostgreSQL's password (`store.password_file`, the credential `password`), and one
/// written into the URL itself, given to the redactor: neither ever reaches a log line.
fn store_password(cfg: &Config) -> Result<Option<secrecy::SecretString>> {
    use secrecy::ExposeSecret;
    let password = cfg.store.password_secret()?;
    if let Some(p) = &password {
        crate::redact::register(p.expose_secret());
    }
    if let Some(url) = cfg.store.url.as_deref() {
        let authority = url.split_once("://").map(|(_, r)| r.split(['/', '?']).next().unwrap_or("")).unwrap_or("");
        if let Some((user_info, _)) = authority.rsplit_once('@') {
            if let Some((_, inline)) = user_info.split_once(':') {
                crate::redact::register(inline);
            }
        }
    }
    Ok(password)
}

/// The audit chain's HMAC key from the credentials (`store.audit_key`), if configured.
pub fn audit_key(cfg: &Config) -> Result<Option<crate::store::audit::AuditKey>> {
    use secrecy::ExposeSecret;
    match cfg.store.audit_key_secret()? {
        Some(s) => Ok(Some(crate::store::audit::AuditKey::new(s.expose_secret().as_bytes())?)),
        None => Ok(None),
    }
}

pub fn build_sinks(cfg: &Config) -> Result<HashMap<String, Arc<dyn TicketSink>>> {
    // One client per sink: each has its own outbound keys (`ca_file`, `max_response_bytes`).
    let timeout = Duration::from_secs(cfg.outbox.request_timeout_secs.max(1));
    let ctx = crate::sinks::config::BuildCtx { timeout, inline_limit: cfg.notes.inline_attachment_max_chars };
    Ok(cfg.sinks.build(&ctx)?)
}

impl App {
    pub async fn build(config: Config) -> Result<App> {
        config.check_secrets()?;
        for w in config.insecure_http_warnings() {
            tracing::warn!(warning = %w, "insecure outbound http allowed");
        }
        let store = open_store(&config).await?;
        Self::with_store(config, store)
    }

    /// The app of a new configuration on the same database, for `SIGHUP` (see
    /// `daemon::run_reloadable`): sources, schedules, sinks, routes, rules and the delivery
    /// policy are rebuilt; the store settings (`[store]`, `notes.marker_key`) and the HTTP
    /// listener need a restart, so a change there is reported in `needs_restart` and the
    /// running values are kept.
    pub fn reload(&self, config: Config) -> Result<(App, Vec<&'static str>)> {
        use secrecy::ExposeSecret;
        config.check_secrets()?;
        for w in config.insecure_http_warnings() {
            tracing::warn!(warning = %w, "insecure outbound http allowed");
        }
        let mut needs_restart = Vec::new();
        let (old, new) = (&self.config, &config);
        let secret = |s: Option<secrecy::SecretString>| s.map(|s| s.expose_secret().to_string());
        if old.store.url() != new.store.url()
            || old.store.busy_timeout_ms != new.store.busy_timeout_ms
            || secret(old.store.password_secret()?) != secret(new.store.password_secret()?)
            || secret(old.store.audit_key_secret()?) != secret(new.store.audit_key_secret()?)
        {
            needs_restart.push("[store]");
        }
        let marker = |c: &Config| c.notes.marker_key_value().map(|k| k.map(|k| k.bytes().to_vec()));
        if marker(old)? != marker(new)? {
            needs_restart.push("notes.marker_key");
        }
        if old.http.active() != new.http.active() || old.http.listen != new.http.listen {
            needs_restart.push("[http]");
        }
        if old.daemon.shared_store != new.daemon.shared_store || old.daemon.instance_id != new.daemon.instance_id {
            needs_restart.push("daemon.shared_store/instance_id");
        }
        let mut config = config;
        config.store = self.config.store.clone();
        config.http = self.config.http.clone();
        // This instance keeps its name in the leases it holds, and its mode.
        config.daemon.shared_store = self.config.daemon.shared_store;
        config.daemon.instance_id = Some(self.instance_id.clone());
        config.notes.marker_key = self.config.notes.marker_key.clone();
        config.notes.marker_key_file = self.config.notes.marker_key_file.clone();
        Ok((Self::with_store(config, self.store.clone())?, needs_restart))
    }

    pub fn with_store(config: Config, store: Store) -> Result<App> {
        // A configured marker key replaces the store's own for every note queued from here.
        let store = match config.notes.marker_key_value()? {
            Some(k) => store.with_marker_key(k),
            None => store,
        };
        let mut sources: Vec<(Arc<dyn Source>, String)> = Vec::new();
        for v in config.vendors().into_iter().filter(|v| v.enabled()) {
            if let (Some(src), Some(schedule)) = (v.build(&store)?, v.schedule()) {
                sources.push((src, schedule.to_string()));
            }
        }
        // The tenants' accounts: each a vendor's source, polled through its account's store
        // handle (its sessions, cursors and lease are the tenant's).
        for (tenant, account, v) in config.tenant_vendors().into_iter().filter(|(_, _, v)| v.enabled()) {
            let scoped = store.for_account(&tenant, account);
            if let (Some(src), Some(schedule)) = (v.build(&scoped)?, v.schedule()) {
                let src = crate::sources::TenantSource::new(src, tenant.clone(), account);
                sources.push((Arc::new(src), schedule.to_string()));
            }
        }
        let sinks = build_sinks(&config)?;
        let mut tenant_sinks = std::collections::BTreeMap::new();
        let timeout = Duration::from_secs(config.outbox.request_timeout_secs.max(1));
        let ctx = crate::sinks::config::BuildCtx { timeout, inline_limit: config.notes.inline_attachment_max_chars };
        let mut sink_concurrency = config.sinks.concurrency();
        let mut routes = Vec::new();
        for t in &config.tenants {
            // Validation refused a bad name before any app is built; skipped all the same.
            let Some(tenant) = t.tenant() else { continue };
            let mut own: HashMap<String, Arc<dyn TicketSink>> = HashMap::new();
            for entry in &t.sinks {
                let Some(c) = entry.sink().filter(|c| c.enabled()) else { continue };
                own.insert(entry.name.clone(), c.build(&ctx)?);
                let r = c.route();
                routes.push(
                    crate::sinks::routing::Route::new(&entry.name, r.tickets.as_deref(), r.sources.as_deref())
                        .with_context(|| format!("tenant {}: sink {}: tickets", t.name, entry.name))?
                        .for_tenant(&tenant),
                );
                if let Some(n) = r.concurrency {
                    sink_concurrency.insert(entry.name.clone(), n);
                }
            }
            tenant_sinks.insert(tenant, Arc::new(own));
        }
        let mut sink_names: Vec<String> =
            sinks.keys().chain(tenant_sinks.values().flat_map(|s| s.keys())).cloned().collect();
        sink_names.sort();
        let rules = crate::matcher::compile_all(&config.matching.rules).context("match.rules")?;
        for (name, tickets, srcs) in config.sinks.routes() {
            routes.push(
                crate::sinks::routing::Route::new(name, tickets, srcs)
                    .with_context(|| format!("sinks.{name}.tickets"))?,
            );
        }
        let policy = DeliveryPolicy::from_config(&config.outbox).with_sink_concurrency(sink_concurrency);
        let store = match crate::pipeline::InlineMatch::for_rules(&rules, &routes, config.notes_tz()) {
            Some(m) => {
                let m = m.with_marker_key(store.marker_key().clone());
                store.with_page_hook(Arc::new(m))
            }
            None => store,
        };
        let instance_id = config.daemon.instance_id();
        let time = Arc::new(config.sinks.time_policies());
        Ok(App {
            config,
            store,
            sources,
            sinks: Arc::new(sinks),
            tenant_sinks: Arc::new(tenant_sinks),
            sink_names,
            routes,
            rules,
            policy,
            instance_id,
            time,
        })
    }

    /// The sinks whose routes accept a note from this source (a vendor name, as in
    /// `sessions.vendor`) for this ticket. Every writer of ticket notes goes through the
    /// routes: the matcher (`match_pending_with`) and the launchers (`session create`).
    pub fn sinks_for<'a>(&'a self, source: &'a str, ticket: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        // `session create` works for the default tenant (its top-level sections) only.
        let default = crate::store::TenantName::default();
        self.routes.iter().filter(move |r| r.serves(&default) && r.accepts(source, ticket)).map(|r| &r.sink)
    }

    /// One matching pass as every command runs it (daemon, `sync-once`, `link`, demo): the
    /// sinks' session-code lookups for the `ticket_field` rule, then the rules, queueing each
    /// match for the sinks its route accepts.
    ///
    /// One pass per tenant, through a store handle scoped to it: a tenant's sessions are
    /// matched against its own links and queued for its own sinks only.
    pub async fn match_pass(&self) -> Result<crate::pipeline::MatchStats, crate::store::StoreError> {
        let mut stats = crate::pipeline::MatchStats::default();
        for (tenant, sinks) in self.all_sinks() {
            let store = self.store.for_tenant(&tenant);
            let hits = crate::pipeline::lookup_ticket_fields(&store, &self.rules, &sinks).await?;
            let tz = self.config.notes_tz();
            stats.add(crate::pipeline::match_pending_with(&store, &self.rules, &self.routes, &hits, tz).await?);
        }
        self.time_pass().await?;
        Ok(stats)
    }

    /// One delivery pass over every tenant ([`crate::pipeline::deliver_tenants`]).
    pub async fn deliver_pass(&self) -> Result<crate::pipeline::DeliverStats, crate::store::StoreError> {
        crate::pipeline::deliver_tenants(&self.store, &self.all_sinks(), &self.policy).await
    }

    /// Every tenant's sinks: `default`'s (`sinks`) first, then `[[tenants]]`'s.
    pub fn all_sinks(&self) -> Vec<(crate::store::TenantName, crate::pipeline::Sinks)> {
        let others = self.tenant_sinks.iter().map(|(t, s)| (t.clone(), s.clone()));
        std::iter::once((crate::store::TenantName::default(), self.sinks.clone())).chain(others).collect()
    }

    /// The time pass (issue 20): the closed groups of matched sessions queued as time
    /// entries on the sinks with `time_entries = true` (crates/pipeline/src/time.rs).
    pub async fn time_pass(&self) -> Result<crate::pipeline::time::TimeStats, crate::store::StoreError> {
        let t =
            crate::pipeline::time::close_groups(&self.store, &self.time, self.config.notes_tz(), chrono::Utc::now())
                .await?;
        if t.queued + t.skipped > 0 {
            tracing::info!(queued = t.queued, skipped = t.skipped, waiting = t.waiting, "time pass");
        }
        Ok(t)
    }

    /// One full cycle: poll every source, match, deliver. Used by `sync-once` and the demo.
    pub async fn cycle(&self) -> Result<CycleReport> {
        let cancel = tokio_util::sync::CancellationToken::new();
        let mut report = CycleReport::default();
        for (src, _) in &self.sources {
            let polled = crate::pipeline::ingest::poll(src.as_ref(), &self.store, &cancel).await;
            crate::pipeline::ingest::note_poll(&self.store, &polled);
            let stats = polled.with_context(|| format!("polling {}", src.name()))?;
            report.matched.matched += stats.matched;
            report.matched.enqueued += stats.enqueued;
            report.polled.push((src.name().to_string(), stats));
        }
        let passes = async {
            let matched = self.match_pass().await?;
            let delivered = self.deliver_pass().await?;
            Ok::<_, crate::store::StoreError>((matched, delivered))
        };
        match passes.await {
            Ok((m, d)) => {
                report.matched.add(m);
                report.delivered = d;
                Ok(report)
            }
            Err(e) => {
                self.store.note_write(Err(&e));
                Err(e.into())
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct CycleReport {
    pub polled: Vec<(String, crate::sources::PollStats)>,
    pub matched: crate::pipeline::MatchStats,
    pub delivered: crate::pipeline::DeliverStats,
}

/// What `sync-once` and the demo print of a cycle: a line per source, then the matching and
/// delivery pass.
impl std::fmt::Display for CycleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, s) in &self.polled {
            writeln!(
                f,
                "polled {name}: {} records in {} pages — {} new, {} updated, {} quarantined",
                s.records, s.pages, s.inserted, s.updated, s.quarantined
            )?;
        }
        let d = &self.delivered;
        write!(
            f,
            "matched {} sessions; delivered {} notes ({} already present, {} retrying, {} failed, {} dead)",
            self.matched.matched, d.delivered, d.found_existing, d.retrying, d.failed, d.dead
        )
    }
}
