//! The stages after the source: match ended sessions (match + outbox rows in one
//! transaction; in a page's own transaction through the store's page hook), render their
//! notes, and deliver due outbox rows to their sinks.

// The layers below, under the names the pipeline's files use.
use ticketsync_http as http;
use ticketsync_model::{marker, note, session};
use ticketsync_sinks as sinks;
use ticketsync_sources as sources;
use ticketsync_store as store;

pub mod ingest;
pub mod matcher;
pub mod metrics;
pub mod render;
pub mod ticket_links;
pub mod time;

use serde::Deserialize;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::matcher::{LinkFact, Rule, SessionFacts};
use crate::note::Note;
use crate::sinks::routing::Route;
use crate::sinks::{SinkErrorKind, TicketSink};
use crate::store::outbox::{self, Delivery, Outcome};
use crate::store::sessions::StoredSession;
use crate::store::{audit, links, Store, StoreError};

pub type Sinks = Arc<HashMap<String, Arc<dyn TicketSink>>>;

/// Tenants' sinks, by tenant, then by sink name (issue 17): a delivery's sink is looked up by
/// (tenant, sink), so a note is only ever sent to its own tenant's ticket system.
pub type TenantSinks = Arc<std::collections::BTreeMap<crate::store::TenantName, Sinks>>;

/// [`deliver_due`] for every tenant: each tenant's pass claims only that tenant's deliveries
/// (a store handle scoped to it) and sends them only to that tenant's sinks.
pub async fn deliver_tenants(
    store: &Store,
    sinks: &[(crate::store::TenantName, Sinks)],
    policy: &DeliveryPolicy,
) -> Result<DeliverStats, StoreError> {
    let mut total = DeliverStats::default();
    for (tenant, own) in sinks {
        total.add(deliver_due(&store.for_tenant(tenant), own, policy).await?);
    }
    Ok(total)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MatchStats {
    pub examined: u64,
    pub matched: u64,
    pub enqueued: u64,
}

/// The page hook's report to the store, which checks that every ended session was examined.
impl From<MatchStats> for crate::store::page::HookOutcome {
    fn from(m: MatchStats) -> Self {
        crate::store::page::HookOutcome { examined: m.examined, matched: m.matched, enqueued: m.enqueued }
    }
}

impl MatchStats {
    pub fn add(&mut self, o: MatchStats) {
        self.examined += o.examined;
        self.matched += o.matched;
        self.enqueued += o.enqueued;
    }
}

/// Match every ended, not yet matched session that changed since it was last examined.
/// Unmatched ones are marked examined at their revision; a new link or a vendor-side
/// change makes them eligible again.
pub async fn match_pending(
    store: &Store,
    rules: &[Rule],
    sinks: &[String],
    tz: chrono_tz::Tz,
) -> Result<MatchStats, StoreError> {
    let routes: Vec<Route> = sinks.iter().map(|s| Route::all(s)).collect();
    match_pending_routed(store, rules, &routes, tz).await
}

/// [`match_pending`], queueing each matched session's note only for the sinks whose route
/// accepts its source and ticket.
pub async fn match_pending_routed(
    store: &Store,
    rules: &[Rule],
    routes: &[Route],
    tz: chrono_tz::Tz,
) -> Result<MatchStats, StoreError> {
    match_pending_with(store, rules, routes, &TicketFieldHits::new(), tz).await
}

/// [`match_pending_routed`] with the tickets [`lookup_ticket_fields`] found.
pub async fn match_pending_with(
    store: &Store,
    rules: &[Rule],
    routes: &[Route],
    hits: &TicketFieldHits,
    tz: chrono_tz::Tz,
) -> Result<MatchStats, StoreError> {
    let mut stats = MatchStats::default();
    let mut after = 0;
    let ctx = MatchContext { rules, routes, hits, tz, marker_key: store.marker_key() };
    loop {
        // The batch is read inside the write transaction: a poll cannot change a session
        // between the matcher's read and its "examined at this revision" mark.
        let mut tx = store.begin().await?;
        let batch = crate::store::sessions::to_match(&mut tx, after, 500).await?;
        let Some(last) = batch.last() else {
            tx.rollback().await?;
            return Ok(stats);
        };
        after = last.id;
        stats.add(ctx.match_batch(&mut tx, &batch, true).await?);
        tx.commit().await?;
    }
}

/// What a matching pass decides with: the rules, the routes to the sinks, the tickets the
/// sinks found by their session-code field, the notes' time zone.
struct MatchContext<'a> {
    rules: &'a [Rule],
    routes: &'a [Route],
    hits: &'a TicketFieldHits,
    tz: chrono_tz::Tz,
    /// The key of the new notes' v2 markers.
    marker_key: &'a crate::marker::MarkerKey,
}

impl MatchContext<'_> {
    /// Match a batch of ended, unmatched sessions in `tx`: each match is recorded and its
    /// note queued for the sinks whose route accepts it; every session of the batch is then
    /// marked examined at its revision (a new link or a vendor-side change clears the mark),
    /// unless `mark` is false: the page hook's sessions were inserted marked.
    async fn match_batch(
        &self,
        tx: &mut crate::store::Tx<'_>,
        batch: &[StoredSession],
        mark: bool,
    ) -> Result<MatchStats, StoreError> {
        let mut stats = MatchStats::default();
        let ext_norms: Vec<String> = batch.iter().map(|s| crate::session::normalize_code(&s.external_id)).collect();
        let mut codes: Vec<&str> = batch.iter().filter_map(|s| s.session_code_norm.as_deref()).collect();
        codes.extend(ext_norms.iter().map(String::as_str));
        // Everything below is the transaction's tenant's: its sessions (`to_match`, the page),
        // its links (`for_codes`), its routes (`Route::serves`), its deliveries (`enqueue_many_in`).
        let tenant = tx.tenant().clone();
        let links_by_code = links::for_codes(tx, &codes).await?;
        let mut chain = audit::Chain::load(tx).await?;
        let mut decided = Vec::new();
        for (s, ext_norm) in batch.iter().zip(&ext_norms) {
            stats.examined += 1;
            let mut link_rows: Vec<&links::TicketLink> = [s.session_code_norm.as_deref(), Some(ext_norm.as_str())]
                .into_iter()
                .flatten()
                .filter_map(|c| links_by_code.get(c))
                .flatten()
                .collect();
            link_rows.sort_by_key(|l| l.id);
            link_rows.dedup_by_key(|l| l.id);
            let mut facts_links: Vec<LinkFact<'_>> = link_rows
                .iter()
                .map(|l| LinkFact {
                    vendor: &l.vendor,
                    code_norm: &l.session_code_norm,
                    ticket_id: &l.ticket_id,
                    kind: &l.kind,
                })
                .collect();
            if let (Some((ticket, _)), Some(code)) = (self.hits.get(&s.id), s.session_code_norm.as_deref()) {
                facts_links.push(LinkFact {
                    vendor: &s.vendor,
                    code_norm: code,
                    ticket_id: ticket,
                    kind: "ticket_field",
                });
            }
            let facts = SessionFacts {
                vendor: &s.vendor,
                external_id: &s.external_id,
                session_code_norm: s.session_code_norm.as_deref(),
                notes: s.notes.as_deref(),
                description: s.description.as_deref(),
                custom_api: s.custom_api.as_deref(),
            };
            if let Some(m) = matcher::match_session(&facts, &facts_links, self.rules) {
                decided.push((s, m));
            }
        }
        // The batch's matches in one statement, then its notes in one more.
        let new_matches: Vec<links::NewMatch<'_>> = decided
            .iter()
            .map(|(s, m)| links::NewMatch {
                session_id: s.id,
                vendor: &s.vendor,
                ticket_id: &m.ticket_id,
                rule: m.rule,
                detail: &m.detail,
            })
            .collect();
        let recorded = links::record_matches_in(tx, &mut chain, &new_matches).await?;
        let mut notes = Vec::new();
        for (s, m) in decided.iter().filter(|(s, _)| recorded.contains(&s.id)) {
            stats.matched += 1;
            tracing::info!(session_id = s.id, vendor = %s.vendor, ticket = %m.ticket_id, rule = m.rule, "session matched");
            let note = crate::render::session_note_for(s, self.tz, self.marker_key, &tenant);
            let json = serde_json::to_string(&note).expect("notes serialize");
            notes.push((s, m, note.marker, json));
        }
        let rows: Vec<outbox::NewDelivery<'_>> = notes
            .iter()
            .flat_map(|(s, m, marker, json)| {
                let routes = self.routes.iter().filter(|r| r.serves(&tenant));
                routes.filter(|r| r.accepts(&s.vendor, &m.ticket_id)).map(|r| outbox::NewDelivery {
                    sink: &r.sink,
                    ticket_id: &m.ticket_id,
                    session_id: s.id,
                    kind: outbox::NoteKind::SessionReport,
                    marker,
                    note_json: json,
                })
            })
            .collect();
        stats.enqueued += outbox::enqueue_many_in(tx, &mut chain, &rows).await?.iter().flatten().count() as u64;
        if mark {
            let ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
            crate::store::sessions::mark_match_checked(tx, &ids).await?;
        }
        chain.flush(tx).await?;
        Ok(stats)
    }
}

/// The matcher in the transaction of each page of new sessions (`Store::with_page_hook`):
/// the ended ones are matched there and then, exactly as a matching pass would, so that
/// ingest does not read every new session back and mark it with a second write. Running
/// sessions and changed ones are left to the pass. Not used with the `ticket_field` rule:
/// its lookups ask the sinks over the network, which never happens inside a transaction.
#[derive(Debug)]
pub struct InlineMatch {
    pub rules: Vec<Rule>,
    pub routes: Vec<Route>,
    pub tz: chrono_tz::Tz,
    /// The key of the notes' markers; `None`: the store's own, read in the page's transaction.
    pub marker_key: Option<crate::marker::MarkerKey>,
}

impl InlineMatch {
    /// `None` when the rules need the sinks' session-code lookups (see above).
    pub fn for_rules(rules: &[Rule], routes: &[Route], tz: chrono_tz::Tz) -> Option<InlineMatch> {
        (!rules.iter().any(|r| matches!(r, Rule::TicketField))).then(|| InlineMatch {
            rules: rules.to_vec(),
            routes: routes.to_vec(),
            tz,
            marker_key: None,
        })
    }

    /// The marker key the store uses (`Store::marker_key`, which a configured key replaces).
    pub fn with_marker_key(mut self, key: crate::marker::MarkerKey) -> InlineMatch {
        self.marker_key = Some(key);
        self
    }
}

#[async_trait::async_trait]
impl crate::store::PageHook for InlineMatch {
    async fn fresh_sessions(
        &self,
        tx: &mut crate::store::Tx<'_>,
        fresh: &[(i64, &crate::session::NewSession)],
    ) -> Result<crate::store::page::HookOutcome, StoreError> {
        let ended: Vec<StoredSession> =
            fresh.iter().filter(|(_, s)| s.ended_at.is_some()).map(|(id, s)| StoredSession::from_new(*id, s)).collect();
        if ended.is_empty() {
            return Ok(crate::store::page::HookOutcome::default());
        }
        let hits = TicketFieldHits::new();
        let key = match &self.marker_key {
            Some(k) => k.clone(),
            None => crate::store::secrets::marker_key(tx).await?,
        };
        let ctx = MatchContext { rules: &self.rules, routes: &self.routes, hits: &hits, tz: self.tz, marker_key: &key };
        // `store::page::upsert_page` inserted them marked examined, and checks that every
        // one was examined here.
        Ok(ctx.match_batch(tx, &ended, false).await?.into())
    }
}

/// Tickets found by a sink's session-code field, by session id: (ticket, sink).
pub type TicketFieldHits = HashMap<i64, (String, String)>;

/// For the `ticket_field` rule: ask each sink that can search its tickets by a custom field
/// holding the session code (Zendesk, Freshservice, JSM, GLPI when configured) about the
/// sessions waiting to be matched. The hits feed [`match_pending_with`], where the rule
/// decides and the match (with the rule and the code) is recorded and audited as usual.
/// Network calls stay outside database transactions; a failed lookup is logged and the
/// session is left to the other rules.
pub async fn lookup_ticket_fields(store: &Store, rules: &[Rule], sinks: &Sinks) -> Result<TicketFieldHits, StoreError> {
    let mut hits = TicketFieldHits::new();
    if !rules.iter().any(|r| matches!(r, Rule::TicketField)) || sinks.is_empty() {
        return Ok(hits);
    }
    let mut names: Vec<&String> = sinks.keys().collect();
    names.sort();
    for s in crate::store::sessions::to_match_read(store, 0, 500).await? {
        let Some(code) = s.session_code.as_deref().filter(|c| !c.trim().is_empty()) else { continue };
        for name in &names {
            match sinks[*name].find_ticket_by_session_code(code).await {
                Ok(Some(ticket)) if matcher::valid_ticket_id(&ticket) => {
                    tracing::info!(session_id = s.id, sink = %name, ticket = %ticket, "ticket found by its session-code field");
                    hits.insert(s.id, (ticket, name.to_string()));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(session_id = s.id, sink = %name, error = %e, "ticket lookup by session code failed")
                }
            }
        }
    }
    Ok(hits)
}

/// Make sessions with this code eligible for matching again (after a new link).
pub async fn rematch_code(tx: &mut crate::store::Tx<'_>, code_norm: &str) -> Result<(), StoreError> {
    links::rematch_code(tx, code_norm).await
}

/// `[outbox]`: how failed deliveries back off and when they give up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    pub base_backoff_secs: u64,
    pub max_backoff_secs: u64,
    /// A delivery still failing after this many hours moves to `failed` (never dropped).
    pub give_up_after_hours: u64,
    pub request_timeout_secs: u64,
}
impl Default for OutboxConfig {
    fn default() -> Self {
        Self { base_backoff_secs: 10, max_backoff_secs: 3600, give_up_after_hours: 168, request_timeout_secs: 30 }
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub give_up_after: chrono::Duration,
    /// Notes in flight at once per sink, unless the sink's own `concurrency` key says otherwise.
    pub concurrency: usize,
    /// `concurrency` of each sink section that sets it, by sink name.
    pub sink_concurrency: HashMap<String, usize>,
}

/// Notes in flight per sink by default. Each loop step is one commit (an fsync, ~5 ms on
/// the test machine), so throughput is about the notes finished per step: against the
/// Redmine simulator answering in 1 ms, 5 000 of 7 500 notes pending, debug build on a
/// shared 2-core machine: concurrency 8 gave 583 notes/s (3.6 notes a commit), 16 gave
/// 1 044 (7.5), 32 gave 1 018 (CPU-bound). 16 it is; a small server gets its own lower
/// `concurrency` (docs/delivery.md).
pub const DEFAULT_CONCURRENCY: usize = 16;

impl DeliveryPolicy {
    pub fn from_config(c: &OutboxConfig) -> Self {
        Self {
            base_backoff: Duration::from_secs(c.base_backoff_secs.max(1)),
            max_backoff: Duration::from_secs(c.max_backoff_secs.max(1)),
            give_up_after: chrono::Duration::hours(c.give_up_after_hours as i64),
            concurrency: DEFAULT_CONCURRENCY,
            sink_concurrency: HashMap::new(),
        }
    }

    /// This policy with the sinks' own `concurrency` keys.
    pub fn with_sink_concurrency(mut self, per_sink: HashMap<String, usize>) -> Self {
        self.sink_concurrency = per_sink;
        self
    }

    /// Notes in flight at once for `sink` (at least one).
    pub fn concurrency_for(&self, sink: &str) -> usize {
        self.sink_concurrency.get(sink).copied().unwrap_or(self.concurrency).max(1)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliverStats {
    pub attempted: u64,
    pub delivered: u64,
    pub found_existing: u64,
    pub retrying: u64,
    pub failed: u64,
    pub dead: u64,
}

impl DeliverStats {
    pub fn add(&mut self, o: DeliverStats) {
        self.attempted += o.attempted;
        self.delivered += o.delivered;
        self.found_existing += o.found_existing;
        self.retrying += o.retrying;
        self.failed += o.failed;
        self.dead += o.dead;
    }

    fn count(&mut self, outcome: &Outcome) {
        self.attempted += 1;
        match outcome {
            Outcome::Delivered { found_existing: true, .. } => self.found_existing += 1,
            Outcome::Delivered { .. } => self.delivered += 1,
            Outcome::Retry { .. } => self.retrying += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Dead { .. } => self.dead += 1,
        }
    }
}

/// One sink's lane in a delivery pass.
#[derive(Debug, Default)]
struct Lane {
    /// Groups (one ticket each) in flight.
    inflight: usize,
    concurrency: usize,
    max_batch: usize,
    /// The last claim found fewer due heads than it asked for, and nothing of this sink has
    /// finished since (a finished note may make the next note of its ticket the head).
    dry: bool,
}

/// Deliver every delivery that was due when the pass began, once. Retries it schedules wait
/// for a later pass.
///
/// Each sink has up to its `concurrency` tickets in flight (one group of notes per ticket,
/// so a ticket's notes still land in queue order: the next is claimable only once the one
/// before it is delivered). The loop is pipelined: as attempts finish, one write transaction
/// records their outcomes and claims as many new heads as slots came free, while the other
/// requests stay on the wire. A claim reads the queue heads' index (O(batch), migration
/// 0006). A sink whose system is held after a rate-limit answer ([`ticketsync_http::holds`]) gets
/// nothing dispatched until the hold ends.
pub async fn deliver_due(store: &Store, sinks: &Sinks, policy: &DeliveryPolicy) -> Result<DeliverStats, StoreError> {
    let mut stats = DeliverStats::default();
    let pass_start = crate::store::now();
    let names = outbox::sinks_with_heads(store).await?;
    // Sinks no longer configured keep a lane too: their notes are failed with a clear
    // error (as before), not left pending unseen.
    let mut lanes: std::collections::BTreeMap<String, Lane> = names
        .into_iter()
        .map(|name| {
            let lane = Lane {
                concurrency: policy.concurrency_for(&name),
                max_batch: sinks.get(&name).map(|s| s.max_batch()).unwrap_or(1).max(1),
                ..Default::default()
            };
            (name, lane)
        })
        .collect();
    let mut inflight: tokio::task::JoinSet<(Vec<Delivery>, Vec<Outcome>)> = tokio::task::JoinSet::new();
    let mut groups_by_task: HashMap<tokio::task::Id, Vec<Delivery>> = HashMap::new();
    let mut finished: Vec<(Delivery, Outcome)> = Vec::new();
    let mut steps = 0u64;
    loop {
        let claims: Vec<outbox::SinkClaim<'_>> = lanes
            .iter()
            .filter(|(name, lane)| {
                !lane.dry
                    && lane.inflight < lane.concurrency
                    && sinks.get(name.as_str()).and_then(|s| s.held()).is_none()
            })
            .map(|(name, lane)| outbox::SinkClaim {
                sink: name,
                groups: lane.concurrency - lane.inflight,
                max_batch: lane.max_batch,
            })
            .collect();
        if finished.is_empty() && claims.is_empty() && inflight.is_empty() {
            tracing::debug!(attempted = stats.attempted, transactions = steps, "delivery pass done");
            return Ok(stats);
        }
        if !finished.is_empty() || !claims.is_empty() {
            steps += 1;
            let claimed = outbox::finish_and_claim(store, &finished, &claims, &pass_start).await?;
            for (d, outcome) in finished.drain(..) {
                stats.count(&outcome);
                crate::metrics::delivery_finished(&d.sink, d.tenant.as_str(), &outcome);
            }
            let asked: Vec<(String, usize)> = claims.iter().map(|c| (c.sink.to_string(), c.groups)).collect();
            for ((name, groups), got) in asked.into_iter().zip(claimed) {
                let lane = lanes.get_mut(&name).expect("claims are made for lanes");
                lane.dry = got.len() < groups;
                lane.inflight += got.len();
                for group in got {
                    let (sinks, policy, g) = (sinks.clone(), policy.clone(), group.clone());
                    let tenant = store.tenant();
                    let handle = inflight.spawn(async move {
                        let started = std::time::Instant::now();
                        // The claim read this tenant's rows only; `sinks` are this tenant's.
                        // Checked again here, so no change to either can cross tenants.
                        let outcomes = if let Some(d) = g.iter().find(|d| d.tenant != tenant) {
                            let error = format!("delivery of tenant {} in tenant {tenant}'s pass: not sent", d.tenant);
                            g.iter().map(|_| Outcome::Failed { error: error.clone() }).collect()
                        } else if g.len() == 1 {
                            vec![attempt(&sinks, &g[0], &policy).await]
                        } else {
                            attempt_batch(&sinks, &g, &policy).await
                        };
                        if let Some(d) = g.first() {
                            crate::metrics::delivery_duration(&d.sink, d.tenant.as_str(), started.elapsed());
                        }
                        (g, outcomes)
                    });
                    groups_by_task.insert(handle.id(), group);
                }
            }
        }
        if inflight.is_empty() {
            continue;
        }
        // Wait for one attempt, then take every other one already done: their outcomes are
        // committed together with the next claim.
        let mut done = vec![inflight.join_next_with_id().await.expect("not empty")];
        while let Some(r) = inflight.try_join_next_with_id() {
            done.push(r);
        }
        for r in done {
            let (group, outcomes) = match r {
                Ok((id, (group, outcomes))) => {
                    groups_by_task.remove(&id);
                    (group, outcomes)
                }
                Err(e) => {
                    // The attempt task died (a panic): the request may have been sent, so the
                    // next attempt scans for the marker first.
                    let group = groups_by_task.remove(&e.id()).unwrap_or_default();
                    tracing::error!(error = %e, deliveries = group.len(), "delivery attempt task failed");
                    let next = crate::session::ts(
                        chrono::Utc::now() + chrono::Duration::seconds(policy.base_backoff.as_secs() as i64),
                    );
                    let outcomes = group
                        .iter()
                        .map(|_| Outcome::Retry {
                            next_attempt_at: next.clone(),
                            error: e.to_string(),
                            ambiguous: true,
                        })
                        .collect();
                    (group, outcomes)
                }
            };
            if let Some(lane) = group.first().and_then(|d| lanes.get_mut(&d.sink)) {
                lane.inflight -= 1;
                lane.dry = false;
            }
            finished.extend(group.into_iter().zip(outcomes));
        }
    }
}

/// One attempt for several deliveries of one ticket (a batching sink): those already on
/// the ticket are recognised by their marker, the rest go in one update and share its outcome.
async fn attempt_batch(sinks: &Sinks, group: &[Delivery], policy: &DeliveryPolicy) -> Vec<Outcome> {
    let Some(sink) = sinks.get(&group[0].sink) else {
        let error = format!("sink {:?} is not configured any more", group[0].sink);
        return group.iter().map(|_| Outcome::Failed { error: error.clone() }).collect();
    };
    if group.iter().any(|d| d.kind == outbox::NoteKind::TimeEntry) {
        // The claim never batches a time entry; one that came anyway is sent on its own.
        let mut out = Vec::with_capacity(group.len());
        for d in group {
            out.push(attempt(sinks, d, policy).await);
        }
        return out;
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; group.len()];
    let mut to_send: Vec<(usize, Note)> = Vec::new();
    for (i, d) in group.iter().enumerate() {
        let note: Note = match serde_json::from_str(&d.note_json) {
            Ok(n) => n,
            Err(e) => {
                outcomes[i] = Some(Outcome::Dead { error: format!("stored note is unreadable: {e}") });
                continue;
            }
        };
        if d.attempts > 1 && sink.capabilities().marker_scan {
            match sink.find_marker(&d.ticket_id, &d.marker).await {
                Ok(Some(remote_ref)) => {
                    tracing::info!(delivery = d.id, sink = %d.sink, ticket = %d.ticket_id, "note already on ticket; not posting again");
                    outcomes[i] = Some(Outcome::Delivered { remote_ref, found_existing: true });
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    outcomes[i] = Some(classify(d, e, policy));
                    continue;
                }
            }
        }
        to_send.push((i, note));
    }
    if !to_send.is_empty() {
        let notes: Vec<Note> = to_send.iter().map(|(_, n)| n.clone()).collect();
        let d0 = &group[to_send[0].0];
        match sink.post_notes(&d0.ticket_id, &notes).await {
            Ok(remote_ref) => {
                tracing::info!(sink = %d0.sink, ticket = %d0.ticket_id, notes = notes.len(), "notes delivered in one update");
                for (i, _) in &to_send {
                    outcomes[*i] = Some(Outcome::Delivered { remote_ref: remote_ref.clone(), found_existing: false });
                }
            }
            Err(e) => {
                for (i, _) in &to_send {
                    outcomes[*i] = Some(classify(&group[*i], e.clone(), policy));
                }
            }
        }
    }
    outcomes.into_iter().map(|o| o.expect("every delivery got an outcome")).collect()
}

/// One attempt. A delivery that was attempted before (crash while `sending`, timeout
/// after send, any earlier error) scans the ticket for its marker first.
async fn attempt(sinks: &Sinks, d: &Delivery, policy: &DeliveryPolicy) -> Outcome {
    let Some(sink) = sinks.get(&d.sink) else {
        return Outcome::Failed { error: format!("sink {:?} is not configured any more", d.sink) };
    };
    if d.kind == outbox::NoteKind::TimeEntry {
        return attempt_time_entry(sink.as_ref(), d, policy).await;
    }
    let note: Note = match serde_json::from_str(&d.note_json) {
        Ok(n) => n,
        Err(e) => return Outcome::Dead { error: format!("stored note is unreadable: {e}") },
    };
    if d.attempts > 1 && sink.capabilities().marker_scan {
        match sink.find_marker(&d.ticket_id, &d.marker).await {
            Ok(Some(remote_ref)) => {
                tracing::info!(delivery = d.id, sink = %d.sink, ticket = %d.ticket_id, "note already on ticket; not posting again");
                return Outcome::Delivered { remote_ref, found_existing: true };
            }
            Ok(None) => {}
            Err(e) => return classify(d, e, policy),
        }
    }
    match sink.post_note(&d.ticket_id, &note).await {
        Ok(remote_ref) => {
            tracing::info!(delivery = d.id, sink = %d.sink, ticket = %d.ticket_id, attempt = d.attempts, "note delivered");
            Outcome::Delivered { remote_ref, found_existing: false }
        }
        Err(e) => classify(d, e, policy),
    }
}

/// One attempt at a time entry: as a note's, the ticket's time entries scanned for the
/// entry's marker before any re-send.
async fn attempt_time_entry(sink: &dyn TicketSink, d: &Delivery, policy: &DeliveryPolicy) -> Outcome {
    let entry: crate::sinks::TimeEntry = match serde_json::from_str(&d.note_json) {
        Ok(e) => e,
        Err(e) => return Outcome::Dead { error: format!("stored time entry is unreadable: {e}") },
    };
    if d.attempts > 1 {
        match sink.find_time_entry(&d.ticket_id, &d.marker).await {
            Ok(Some(remote_ref)) => {
                tracing::info!(delivery = d.id, sink = %d.sink, ticket = %d.ticket_id, "time entry already on ticket; not posting again");
                return Outcome::Delivered { remote_ref, found_existing: true };
            }
            Ok(None) => {}
            Err(e) => return classify(d, e, policy),
        }
    }
    match sink.post_time_entry(&d.ticket_id, &entry).await {
        Ok(remote_ref) => {
            tracing::info!(delivery = d.id, sink = %d.sink, ticket = %d.ticket_id, minutes = entry.minutes, attempt = d.attempts, "time entry delivered");
            Outcome::Delivered { remote_ref, found_existing: false }
        }
        Err(e) => classify(d, e, policy),
    }
}

fn classify(d: &Delivery, e: crate::sinks::SinkError, policy: &DeliveryPolicy) -> Outcome {
    let error = e.to_string();
    tracing::warn!(delivery = d.id, sink = %d.sink, ticket = %d.ticket_id, attempt = d.attempts, error = %error, "delivery attempt failed");
    let (retry_after, ambiguous) = match e.kind {
        SinkErrorKind::Retry { retry_after } => (retry_after, false),
        SinkErrorKind::Ambiguous => (None, true),
        SinkErrorKind::Auth => {
            return Outcome::Failed {
                error: format!("{error} (fix the sink credentials, then `ticketsync retry {}`)", d.id),
            }
        }
        SinkErrorKind::Permanent => return Outcome::Dead { error },
    };
    let created = d.created_at;
    if chrono::Utc::now() - created > policy.give_up_after {
        return Outcome::Failed {
            error: format!(
                "{error} (still failing after {} h; requeue with `ticketsync retry {}`)",
                policy.give_up_after.num_hours(),
                d.id
            ),
        };
    }
    // The server's Retry-After is honoured (never earlier); otherwise back off. A Retry-After
    // of zero (or an HTTP date already past, e.g. clock skew) still waits a little: the row
    // would be due at once and `deliver_due` would re-claim it in a tight loop.
    let wait = match retry_after {
        Some(r) => r.max(policy.base_backoff.min(Duration::from_secs(1))),
        None => crate::http::outbox_backoff(d.attempts as u32, policy.base_backoff, policy.max_backoff),
    };
    let next = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
    Outcome::Retry { next_attempt_at: crate::session::ts(next), error, ambiguous }
}
