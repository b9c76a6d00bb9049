//! A vendor-faithful simulator of the TeamViewer Web API (`/api/v1`), served over real HTTP on
//! 127.0.0.1 so that integration tests, `ticketsync demo` and benchmarks exercise the same client
//! code paths as production. The wire format follows `shared/vendor-apis/teamviewer.md`.
//!
//! Records are kept as pre-serialised JSON in a `Vec` sorted by `(start_date, id)`: a page is a
//! binary search plus copying at most `page_size` strings, which keeps 1M records cheap.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The user every issued token belongs to; sessions created via the API are assigned to them.
pub const SIM_USERID: &str = "u11293276";
pub const SIM_USERNAME: &str = "Jon Snow";

const TECHS: [(&str, &str); 6] = [
    (SIM_USERID, SIM_USERNAME),
    ("u1234567", "AMS Support"),
    ("u20481122", "Arya Stark"),
    ("u20481123", "Samwell Tarly"),
    ("u20481124", "Brienne Tarth"),
    ("u20481125", "Davos Seaworth"),
];
// The empty group mirrors real data where a device's group is unknown (spec §1.3).
const GROUPS: [(&str, &str); 4] =
    [("g272032545", "Helpdesk"), ("g272032546", "Field Service"), ("g272032547", "Servers"), ("", "")];
const CUSTOMERS: [&str; 4] = ["Peter Niedhelp", "Maria Gonzalez", "Kenji Watanabe", "Aisha Okafor"];
const PROBLEMS: [&str; 6] = [
    "printer offline",
    "VPN drops every hour",
    "Outlook keeps asking for password",
    "laptop very slow",
    "second monitor not detected",
    "blue screen after update",
];
const LOG_CAP: usize = 100_000;
const CODE_VALIDITY: Duration = Duration::from_secs(600);

// Codes are illustrative except token_expired=1, the only one the vendor documents (§3.4).
const E_EXPIRED: u32 = 1;
const E_INVALID_TOKEN: u32 = 2;
const E_INVALID_REQUEST: u32 = 3;
const E_RATE_LIMIT: u32 = 4;
const E_NOT_FOUND: u32 = 5;
const E_INVALID_CLIENT: u32 = 6;

#[derive(Clone)]
pub struct SimOptions {
    pub page_size: usize,
    pub script_tokens: Vec<String>,
    /// `(client_id, client_secret)`; when `None` any client credentials are accepted.
    pub oauth_client: Option<(String, String)>,
    pub access_token_ttl: Duration,
    pub rotate_refresh_tokens: bool,
    /// Company-level tokens never see `devicename` (spec §4.4).
    pub company_token: bool,
    /// 0 picks a free port.
    pub port: u16,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            page_size: 1000,
            script_tokens: Vec::new(),
            oauth_client: None,
            access_token_ttl: Duration::from_secs(86_400),
            rotate_refresh_tokens: true,
            company_token: false,
            port: 0,
        }
    }
}

/// A canned answer for the next `times` requests whose path starts with `path_prefix` (matched
/// against the full path and against the path without `/api/v1`). `status == 0` only delays.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    pub path_prefix: String,
    /// 0 is treated as 1.
    pub times: usize,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Option<Duration>,
}

impl Fault {
    pub fn new(path_prefix: impl Into<String>, status: u16) -> Fault {
        let path_prefix = path_prefix.into();
        Fault { path_prefix, times: 1, status, ..Fault::default() }
    }
}

#[derive(Clone, Debug)]
pub enum RateLimit {
    Forbidden { every_nth: usize },
    TooMany { every_nth: usize, retry_after: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    pub query: String,
    /// An `Authorization` header was present (valid or not).
    pub authorized: bool,
    /// `token_fingerprint` of the bearer token, so tests can tell tokens apart without keeping them.
    pub token: Option<String>,
    /// 0 while the request is still being answered (or if the client hung up first).
    pub status: u16,
}

/// Short stable digest of a token (FNV-1a, top 32 bits); it cannot be turned back into the token.
pub fn token_fingerprint(token: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h >> 32)
}

pub struct TeamViewerSim {
    pub base_url: String,
    inner: Arc<Inner>,
    server: crate::Served,
}

struct Inner {
    opts: SimOptions,
    base_url: String,
    state: Mutex<St>,
    mis: super::MisEncoding,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        // A panicking test thread must not take the whole simulator down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An error in the vendor's body format (spec §3.4).
struct ApiError {
    status: StatusCode,
    error: &'static str,
    desc: String,
    code: u32,
}

type Reply = Result<Response, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.desc, "error_code": self.code });
        let mut resp = (self.status, Json(body)).into_response();
        // Token problems carry the Bearer challenge (§3.4); a bad OAuth client is not one.
        if self.status == StatusCode::UNAUTHORIZED && self.error != "invalid_client" {
            let bearer = HeaderValue::from_static("Bearer");
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, bearer);
        }
        resp
    }
}

fn api_err(status: StatusCode, error: &'static str, desc: impl Into<String>, code: u32) -> ApiError {
    ApiError { status, error, desc: desc.into(), code }
}

fn bad(desc: impl Into<String>) -> ApiError {
    api_err(StatusCode::BAD_REQUEST, "invalid_request", desc, E_INVALID_REQUEST)
}

fn not_found(what: &str) -> ApiError {
    api_err(StatusCode::NOT_FOUND, "not_found", format!("{what} does not exist"), E_NOT_FOUND)
}

fn invalid_token(desc: &str) -> ApiError {
    api_err(StatusCode::UNAUTHORIZED, "invalid_token", desc, E_INVALID_TOKEN)
}

// `raw` only orders records whose start_date is missing or unparseable; those sort first so the
// date-filter ranges stay contiguous.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    start: Option<DateTime<Utc>>,
    raw: Box<str>,
    id: Arc<str>,
}

/// Filterable fields, extracted once so that filtered scans over 1M records never parse JSON.
#[derive(Debug, PartialEq)]
struct Fields {
    username: Option<Box<str>>,
    userid: Option<Box<str>>,
    groupid: Option<Box<str>>,
    devicename: Option<Box<str>>,
    deviceid: Option<Box<str>>,
    code: Option<Box<str>>,
    sst: Option<i64>,
}

struct Rec {
    key: Key,
    json: Box<str>,
    f: Fields,
}

fn loose_text(v: Option<&Value>) -> Option<Box<str>> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.as_str().into()),
        other => Some(other.to_string().into()),
    }
}

impl Rec {
    fn new(v: &Value) -> Rec {
        let id: Arc<str> = match v.get("id") {
            Some(Value::String(s)) => s.to_lowercase().into(),
            other => loose_text(other).unwrap_or_default().into(),
        };
        let (start, raw) = match v.get("start_date") {
            Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(d) => (Some(d.with_timezone(&Utc)), "".into()),
                Err(_) => (None, s.as_str().into()),
            },
            other => (None, loose_text(other).unwrap_or_default()),
        };
        let text = |k: &str| loose_text(v.get(k));
        let code = text("session_code").map(|c| norm_code(&c)).filter(|c| !c.is_empty());
        let f = Fields {
            username: text("username"),
            userid: text("userid"),
            groupid: text("groupid"),
            devicename: text("devicename"),
            deviceid: text("deviceid"),
            code: code.map(String::into_boxed_str),
            sst: text("support_session_type").and_then(|t| t.trim().parse().ok()),
        };
        // `Value::to_string` goes through fmt::Write and was the hot spot of `generate`;
        // serialising a Value into memory cannot fail.
        let json = serde_json::to_string(v).unwrap_or_default().into();
        Rec { key: Key { start, raw, id }, json, f }
    }
}

/// `generate` output, serialised directly: building a `Value` per record made 1M records slow.
#[derive(Serialize)]
struct GenRecord {
    id: String,
    userid: &'static str,
    username: &'static str,
    deviceid: String,
    devicename: String,
    groupid: &'static str,
    groupname: &'static str,
    start_date: String,
    end_date: String,
    fee: &'static str,
    currency: &'static str,
    billing_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
    support_session_type: i64,
    #[serde(flatten)]
    case: Option<GenCase>,
}

#[derive(Serialize)]
struct GenCase {
    session_code: String,
    assigned_userid: &'static str,
    assigned_at: String,
    session_created_at: String,
    valid_until: String,
    session_note: String,
    custom_api: String,
    end_customer: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<Value>,
}

impl GenRecord {
    /// Must agree with `Rec::new` on the same JSON; a test checks that.
    fn into_rec(self, start: DateTime<Utc>) -> Rec {
        // Serialising plain strings and Values cannot fail.
        let json = serde_json::to_string(&self).unwrap_or_default().into();
        let f = Fields {
            username: Some(self.username.into()),
            userid: Some(self.userid.into()),
            groupid: Some(self.groupid.into()),
            devicename: Some(self.devicename.into()),
            deviceid: Some(self.deviceid.into()),
            code: self.case.map(|c| norm_code(&c.session_code).into()),
            sst: Some(self.support_session_type),
        };
        let key = Key { start: Some(start), raw: "".into(), id: self.id.to_lowercase().into() };
        Rec { key, json, f }
    }
}

enum Tok {
    Valid,
    Expired,
    Invalid,
}

struct AccessToken {
    expires_at: Option<Instant>,
    expired: bool,
    refresh: String,
}

struct AuthCode {
    issued: Instant,
    redirect_uri: Option<String>,
    client_id: Option<String>,
}

#[derive(Default)]
struct St {
    recs: Vec<Rec>,
    by_id: HashMap<Arc<str>, Key>,
    // Looking a service case up by code is the usual ticket join (§2.4); a scan of 1M records
    // per ticket would dominate benchmarks.
    by_code: HashMap<Box<str>, Vec<Key>>,
    // Cursors must survive deletion of the record they point at (reports can vanish, §4.3).
    deleted: HashMap<Arc<str>, Key>,
    generation: u64,
    cache: Vec<(String, u64, Arc<Vec<u32>>)>,
    faults: VecDeque<Fault>,
    log: VecDeque<(u64, RequestLog)>,
    log_seq: u64,
    access: HashMap<String, AccessToken>,
    refresh: HashSet<String>,
    codes: HashMap<String, AuthCode>,
    rate_limit: Option<RateLimit>,
    calls: usize,
    refresh_count: usize,
    sessions: Vec<Map<String, Value>>,
    groups: Vec<(String, String)>,
}

impl St {
    fn index(&mut self, rec: &Rec) {
        let key = &rec.key;
        if !key.id.is_empty() {
            self.deleted.remove(&key.id);
            self.by_id.insert(key.id.clone(), key.clone());
        }
        if let Some(code) = &rec.f.code {
            self.by_code.entry(code.clone()).or_default().push(key.clone());
        }
    }

    fn insert(&mut self, rec: Rec) {
        self.index(&rec);
        // Upper bound keeps records with equal keys in insertion order.
        let pos = self.recs.partition_point(|r| r.key <= rec.key);
        self.recs.insert(pos, rec);
        self.generation += 1;
    }

    fn position(&self, id: &str) -> Option<usize> {
        let key = self.by_id.get(id.to_lowercase().as_str())?;
        let pos = self.recs.partition_point(|r| r.key < *key);
        (pos < self.recs.len() && self.recs[pos].key == *key).then_some(pos)
    }

    fn take(&mut self, id: &str) -> Option<Rec> {
        let rec = self.recs.remove(self.position(id)?);
        self.by_id.remove(&rec.key.id);
        if let Some(keys) = rec.f.code.as_ref().and_then(|c| self.by_code.get_mut(c)) {
            keys.retain(|k| *k != rec.key);
        }
        self.generation += 1;
        Some(rec)
    }

    fn delete(&mut self, id: &str) -> bool {
        let Some(rec) = self.take(id) else {
            return false;
        };
        self.deleted.insert(rec.key.id.clone(), rec.key);
        true
    }

    fn update(&mut self, id: &str, patch: &Value) -> bool {
        let Some(rec) = self.take(id) else {
            return false;
        };
        let mut v: Value = serde_json::from_str(&rec.json).unwrap_or(Value::Null);
        if let (Value::Object(m), Value::Object(p)) = (&mut v, patch) {
            for (k, val) in p {
                if val.is_null() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), val.clone());
                }
            }
        }
        self.insert(Rec::new(&v));
        true
    }

    fn selection(&mut self, f: &ConnFilter) -> Sel {
        let malformed = self.recs.partition_point(|r| r.key.start.is_none());
        let bound = |t: Option<DateTime<Utc>>, none: usize| match t {
            Some(t) => self.recs.partition_point(|r| r.key.start < Some(t)),
            None => none,
        };
        let lo = bound(f.from, malformed);
        let hi = bound(f.to, self.recs.len()).max(lo);
        // Malformed start dates are always returned so the client gets to quarantine them.
        let ranges = [0..malformed, lo..hi];
        if !f.has_field_filters() {
            return Sel::Ranges(ranges);
        }
        let (sig, generation) = (format!("{f:?}"), self.generation);
        let cached = self.cache.iter().find(|(s, g, _)| *g == generation && *s == sig);
        if let Some((_, _, hits)) = cached {
            return Sel::Indices(hits.clone());
        }
        let in_ranges = |i: usize| ranges.iter().any(|r| r.contains(&i));
        let hits: Vec<u32> = match &f.session_code {
            Some(code) => {
                let keys = self.by_code.get(code.as_str()).map(Vec::as_slice);
                let mut hits: Vec<u32> = Vec::new();
                for key in keys.unwrap_or_default() {
                    let first = self.recs.partition_point(|r| r.key < *key);
                    let same = self.recs[first..].iter().take_while(|r| r.key == *key);
                    hits.extend(
                        (first..).zip(same).filter(|(i, r)| in_ranges(*i) && f.matches(&r.f)).map(|(i, _)| i as u32),
                    );
                }
                hits.sort_unstable();
                hits.dedup();
                hits
            }
            None => {
                let all = ranges.iter().flat_map(|r| r.clone());
                all.filter(|&i| f.matches(&self.recs[i].f)).map(|i| i as u32).collect()
            }
        };
        let hits = Arc::new(hits);
        self.cache.retain(|(_, g, _)| *g == generation);
        if self.cache.len() >= 8 {
            self.cache.remove(0);
        }
        self.cache.push((sig, generation, hits.clone()));
        Sel::Indices(hits)
    }

    fn connections_page(
        &mut self,
        f: &ConnFilter,
        offset: Option<&str>,
        page: usize,
        strip: bool,
    ) -> Result<String, ApiError> {
        let sel = self.selection(f);
        let first = match offset {
            None => 0,
            Some(id) => {
                let key = self.by_id.get(id).or_else(|| self.deleted.get(id));
                let key = key.ok_or_else(|| bad("offset_id does not name a known report"))?;
                sel.rank(self.recs.partition_point(|r| r.key <= *key))
            }
        };
        let end = (first + page).min(sel.len());
        let mut out = String::with_capacity(64 + end.saturating_sub(first) * 600);
        out.push_str("{\"records\":[");
        for k in first..end {
            if k > first {
                out.push(',');
            }
            let rec = &self.recs[sel.get(k)];
            if strip && rec.f.devicename.is_some() {
                let mut v: Value = serde_json::from_str(&rec.json).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.remove("devicename");
                }
                out.push_str(&v.to_string());
            } else {
                out.push_str(&rec.json);
            }
        }
        out.push(']');
        if end < sel.len() {
            let last: Value = serde_json::from_str(&self.recs[sel.get(end - 1)].json).unwrap_or_default();
            // A record without an id yields "", which the client's repeated-cursor guard catches.
            let next = match last.get("id") {
                Some(Value::String(s)) => s.clone(),
                other => loose_text(other).unwrap_or_default().into(),
            };
            let remaining = sel.len() - end;
            out.push_str(&format!(",\"records_remaining\":{remaining},\"next_offset\":{}", Value::String(next)));
        }
        out.push('}');
        Ok(out)
    }

    fn token_status(&self, opts: &SimOptions, token: &str) -> Tok {
        if opts.script_tokens.iter().any(|t| t == token) {
            return Tok::Valid;
        }
        match self.access.get(token) {
            None => Tok::Invalid,
            Some(a) if a.expired || a.expires_at.is_some_and(|t| Instant::now() >= t) => Tok::Expired,
            Some(_) => Tok::Valid,
        }
    }

    fn issue_tokens(&mut self, opts: &SimOptions, refresh: Option<String>) -> Value {
        let access = new_token();
        let refresh = refresh.unwrap_or_else(new_token);
        self.refresh.insert(refresh.clone());
        let expires_at = Instant::now().checked_add(opts.access_token_ttl);
        let token = AccessToken { expires_at, expired: false, refresh: refresh.clone() };
        self.access.insert(access.clone(), token);
        json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": opts.access_token_ttl.as_secs(),
            "refresh_token": refresh,
        })
    }

    fn rate_limited(&mut self) -> Option<Response> {
        let (every, retry_after) = match &self.rate_limit {
            None => return None,
            Some(RateLimit::Forbidden { every_nth }) => (*every_nth, None),
            Some(RateLimit::TooMany { every_nth, retry_after }) => (*every_nth, Some(retry_after.clone())),
        };
        self.calls += 1;
        if every == 0 || !self.calls.is_multiple_of(every) {
            return None;
        }
        let body = Json(json!({
            "error": "rate_limit_reached",
            "error_description": "Too many calls to a single function with the same access token.",
            "error_code": E_RATE_LIMIT,
            "error_signature": 123456789,
        }));
        let Some(retry_after) = retry_after else {
            return Some((StatusCode::FORBIDDEN, body).into_response());
        };
        let mut resp = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
        if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        Some(resp)
    }

    fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let short = path.strip_prefix("/api/v1").unwrap_or(path);
        let i = self.faults.iter().position(|f| {
            let prefix = f.path_prefix.as_str();
            path.starts_with(prefix) || short.starts_with(prefix)
        })?;
        if self.faults[i].times <= 1 {
            return self.faults.remove(i);
        }
        self.faults[i].times -= 1;
        Some(self.faults[i].clone())
    }

    fn group_name(&self, groupid: &str) -> String {
        let found = self.groups.iter().find(|(id, _)| id.eq_ignore_ascii_case(groupid));
        found.map(|(_, name)| name.clone()).unwrap_or_default()
    }

    fn resolve_group(&mut self, id: Option<&str>, name: Option<&str>) -> Result<String, ApiError> {
        if id.is_some_and(|id| !is_prefixed_id(id, 'g')) {
            return Err(bad("groupid must look like g123"));
        }
        let named = name.and_then(|n| self.groups.iter().find(|(_, g)| g.eq_ignore_ascii_case(n)));
        let mismatch = || bad("groupid and groupname name different groups");
        match (id, name, named.map(|(gid, _)| gid.clone())) {
            (None, None, _) => Err(bad("groupid or groupname is required")),
            (Some(id), None, _) => Ok(id.to_string()),
            (None, Some(_), Some(gid)) => Ok(gid),
            (Some(id), Some(_), Some(gid)) => gid.eq_ignore_ascii_case(id).then_some(gid).ok_or_else(mismatch),
            (id, Some(name), None) => {
                if id.is_some_and(|id| self.groups.iter().any(|(g, _)| g == id)) {
                    return Err(mismatch());
                }
                // An unknown groupname creates the group (spec §2.1).
                let random = || format!("g{}", rand::rng().random_range(100_000_000..1_000_000_000u32));
                let gid = id.map_or_else(random, str::to_string);
                self.groups.push((gid.clone(), name.to_string()));
                Ok(gid)
            }
        }
    }

    fn session_index(&self, code: &str) -> Option<usize> {
        let want = norm_code(code);
        let code_of = |s: &Map<String, Value>| s.get("code").and_then(Value::as_str).map(norm_code);
        self.sessions.iter().position(|s| code_of(s).as_deref() == Some(want.as_str()))
    }

    /// Validates and applies the writable session fields shared by POST and PUT.
    fn apply_session_fields(&mut self, s: &mut Map<String, Value>, body: &Map<String, Value>) -> Result<(), ApiError> {
        let (groupid, groupname) = (opt_str(body, "groupid")?, opt_str(body, "groupname")?);
        if groupid.is_some() || groupname.is_some() {
            let gid = self.resolve_group(groupid.as_deref(), groupname.as_deref())?;
            s.insert("groupid".into(), json!(gid));
        }
        for k in ["waiting_message", "description"] {
            if let Some(v) = opt_str(body, k)? {
                s.insert(k.into(), json!(v));
            }
        }
        if let Some(v) = opt_str(body, "custom_api")? {
            if v.chars().count() > 4000 {
                return Err(bad("custom_api must not exceed 4000 characters"));
            }
            s.insert("custom_api".into(), json!(v));
        }
        match body.get("end_customer") {
            None | Some(Value::Null) => {}
            Some(Value::Object(ec)) => {
                let mut out = Map::new();
                for (k, max) in [("name", 100), ("email", 254)] {
                    if let Some(v) = opt_str(ec, k)? {
                        if v.chars().count() > max {
                            return Err(bad(format!("end_customer.{k} must not exceed {max} characters")));
                        }
                        out.insert(k.into(), json!(v));
                    }
                }
                s.insert("end_customer".into(), Value::Object(out));
            }
            Some(_) => return Err(bad("end_customer must be an object")),
        }
        if let Some(u) = opt_str(body, "assigned_userid")? {
            if !is_prefixed_id(&u, 'u') {
                return Err(bad("assigned_userid must look like u123"));
            }
            if u == "u0" {
                s.remove("assigned_at");
            } else {
                s.insert("assigned_at".into(), json!(fmt_ts(Utc::now())));
            }
            s.insert("assigned_userid".into(), json!(u));
        }
        if let Some(v) = opt_str(body, "valid_until")? {
            let t = parse_when(&v).ok_or_else(|| bad("valid_until is not a valid date"))?;
            s.insert("valid_until".into(), json!(fmt_ts(t)));
        }
        Ok(())
    }

    fn create_session(&mut self, body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
        if opt_str(body, "groupid")?.is_none() && opt_str(body, "groupname")?.is_none() {
            return Err(bad("groupid or groupname is required"));
        }
        let pilot = match opt_str(body, "support_session_type")?.map(|t| t.to_ascii_lowercase()) {
            None => false,
            Some(t) if t == "default" || t == "pilot" => t == "pilot",
            Some(_) => return Err(bad("support_session_type must be Default or Pilot")),
        };
        let now = Utc::now();
        let defaults = [
            ("state", json!("Open")),
            ("online", json!(false)),
            ("assigned_userid", json!(SIM_USERID)),
            ("assigned_at", json!(fmt_ts(now))),
            ("created_at", json!(fmt_ts(now))),
            ("valid_until", json!(fmt_ts(now + TimeDelta::hours(24)))),
            ("support_session_type", json!(if pilot { "Pilot" } else { "Default" })),
        ];
        let mut s: Map<String, Value> = defaults.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        self.apply_session_fields(&mut s, body)?;
        let mut rng = rand::rng();
        let code = loop {
            let code = random_code(&mut rng);
            if self.session_index(&code).is_none() {
                break code;
            }
        };
        let (bare, queue) = (norm_code(&code), alnum(&mut rng, 12));
        let host = if pilot { "getpilot" } else { "get" };
        let display = encode(SIM_USERNAME).replace("%20", "+");
        s.insert("code".into(), json!(code));
        s.insert("end_customer_link".into(), json!(format!("https://{host}.teamviewer.com/v15/{bare}")));
        s.insert("supporter_link".into(), json!(format!("https://{host}.teamviewer.com/v15/{bare}-{queue}")));
        let web = format!("https://login.teamviewer.com/Connect/IndexByol?sessioncode={bare}&servicequeuetoken={queue}&lang=en&displayName={display}");
        s.insert("webclient_supporter_link".into(), json!(web));
        self.sessions.push(s.clone());
        Ok(s)
    }
}

enum Sel {
    Ranges([Range<usize>; 2]),
    Indices(Arc<Vec<u32>>),
}

impl Sel {
    fn len(&self) -> usize {
        match self {
            Sel::Ranges([a, b]) => a.len() + b.len(),
            Sel::Indices(v) => v.len(),
        }
    }

    fn get(&self, k: usize) -> usize {
        match self {
            Sel::Ranges([a, _]) if k < a.len() => a.start + k,
            Sel::Ranges([a, b]) => b.start + k - a.len(),
            Sel::Indices(v) => v[k] as usize,
        }
    }

    /// How many selected records lie before vector position `pos`.
    fn rank(&self, pos: usize) -> usize {
        match self {
            Sel::Ranges([a, b]) => pos.clamp(a.start, a.end) - a.start + pos.clamp(b.start, b.end) - b.start,
            Sel::Indices(v) => v.partition_point(|&i| (i as usize) < pos),
        }
    }
}

#[derive(Debug)]
struct ConnFilter {
    username: Option<String>,
    userid: Option<String>,
    groupid: Option<String>,
    devicename: Option<String>,
    deviceid: Option<String>,
    session_code: Option<String>,
    has_code: Option<bool>,
    sst: Option<i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl ConnFilter {
    fn parse(p: &HashMap<String, String>, company_token: bool) -> Result<ConnFilter, ApiError> {
        let s = |k: &str| p.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let date = |k: &str| {
            let parsed = s(k).map(|v| parse_when(&v).ok_or_else(|| bad(format!("{k} is not a valid date"))));
            parsed.transpose()
        };
        let devicename = s("devicename");
        if devicename.is_some() && company_token {
            return Err(bad("devicename can only be used with a user access token"));
        }
        let has_code = s("has_code").map(|v| parse_bool(&v).ok_or_else(|| bad("has_code must be true or false")));
        let sst =
            s("support_session_type").map(|v| v.parse().map_err(|_| bad("support_session_type must be an integer")));
        Ok(ConnFilter {
            username: s("username"),
            userid: s("userid"),
            groupid: s("groupid"),
            devicename,
            deviceid: s("deviceid"),
            session_code: s("session_code").map(|c| norm_code(&c)),
            has_code: has_code.transpose()?,
            sst: sst.transpose()?,
            from: date("from_date")?,
            to: date("to_date")?,
        })
    }

    fn has_field_filters(&self) -> bool {
        let strings =
            [&self.username, &self.userid, &self.groupid, &self.devicename, &self.deviceid, &self.session_code];
        strings.iter().any(|s| s.is_some()) || self.has_code.is_some() || self.sst.is_some()
    }

    fn matches(&self, f: &Fields) -> bool {
        fn eq(want: &Option<String>, have: &Option<Box<str>>) -> bool {
            want.as_ref().is_none_or(|w| have.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
        }
        let devicename_ok = match self.devicename.as_deref() {
            Some("unnamed_device") => f.devicename.as_deref().is_none_or(str::is_empty),
            _ => eq(&self.devicename, &f.devicename),
        };
        devicename_ok
            && eq(&self.username, &f.username)
            && eq(&self.userid, &f.userid)
            && eq(&self.groupid, &f.groupid)
            && eq(&self.deviceid, &f.deviceid)
            && eq(&self.session_code, &f.code)
            && self.has_code.is_none_or(|h| h == f.code.is_some())
            && self.sst.is_none_or(|t| f.sst == Some(t))
    }
}

impl TeamViewerSim {
    pub async fn start(opts: SimOptions) -> std::io::Result<TeamViewerSim> {
        let (listener, base_url) = crate::listen(opts.port).await?;
        let mut st = St::default();
        let known = GROUPS.iter().filter(|(id, _)| !id.is_empty());
        st.groups = known.map(|(id, name)| (id.to_string(), name.to_string())).collect();
        let inner =
            Arc::new(Inner { opts, base_url: base_url.clone(), state: Mutex::new(st), mis: Default::default() });
        let app = router(inner.clone());
        Ok(TeamViewerSim { base_url, inner, server: crate::Served::serve(listener, app) })
    }

    /// `base_url` plus `/api/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.base_url)
    }

    /// From now on `text` goes out as `bytes` in every answer (see [`super::MisEncoding`]).
    pub fn mis_encode(&self, text: &str, bytes: &[u8]) {
        self.inner.mis.add(text, bytes);
    }

    /// Stores the record exactly as given; malformed records are kept on purpose.
    pub fn add_connection(&self, record: Value) {
        let rec = Rec::new(&record);
        self.inner.lock().insert(rec);
    }

    /// Shallow merge; a `null` in the patch removes the field (e.g. to make a session "running").
    pub fn update_connection(&self, id: &str, patch: Value) {
        self.inner.lock().update(id, &patch);
    }

    pub fn delete_connection(&self, id: &str) {
        self.inner.lock().delete(id);
    }

    /// The stored record, as the API would return it to a user token.
    pub fn connection(&self, id: &str) -> Option<Value> {
        let st = self.inner.lock();
        serde_json::from_str(&st.recs[st.position(id)?].json).ok()
    }

    pub fn connection_count(&self) -> usize {
        self.inner.lock().recs.len()
    }

    /// Deterministic for a seed: `n` ended records starting at `first_start`, one every 5–15 s.
    /// ~30% carry service-case fields with ticket numbers in `10000..10000+max(n,1000)`.
    pub fn generate(&self, n: usize, seed: u64, first_start: DateTime<Utc>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let span = n.max(1000) as u64;
        let mut t = first_start - TimeDelta::nanoseconds(first_start.timestamp_subsec_nanos().into());
        let mut recs = Vec::with_capacity(n);
        for _ in 0..n {
            let start = t;
            t += TimeDelta::seconds(rng.random_range(5..=15));
            let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string();
            let (userid, username) = TECHS[rng.random_range(0..TECHS.len())];
            let (groupid, groupname) = GROUPS[rng.random_range(0..GROUPS.len())];
            let dev = rng.random_range(0..500u64);
            let kind = ["LT", "WS", "SRV"][(dev % 3) as usize];
            let end = start + TimeDelta::seconds(rng.random_range(90..5400));
            let case = rng.random_bool(0.3).then(|| {
                let ticket = 10_000 + rng.random_range(0..span);
                let problem = PROBLEMS[rng.random_range(0..PROBLEMS.len())];
                let name = CUSTOMERS[rng.random_range(0..CUSTOMERS.len())];
                let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
                let created = start - TimeDelta::seconds(rng.random_range(30..1800));
                // Feedback is an empty object when enabled but not given (§1.3).
                let feedback = match rng.random_range(0..10) {
                    0..=3 => Some(json!({})),
                    4..=6 => {
                        let rating = rng.random_range(1..=5);
                        Some(json!({ "session_rating": rating, "user_comment": "Thanks" }))
                    }
                    _ => None,
                };
                GenCase {
                    session_code: random_code(&mut rng),
                    assigned_userid: userid,
                    assigned_at: fmt_ts(created),
                    session_created_at: fmt_ts(created),
                    valid_until: fmt_ts(created + TimeDelta::hours(24)),
                    session_note: format!("INC-{ticket}: {problem}"),
                    custom_api: json!({ "ticket_id": ticket.to_string() }).to_string(),
                    end_customer: json!({ "name": name, "email": email }),
                    feedback,
                }
            });
            let g = GenRecord {
                id,
                userid,
                username,
                deviceid: (1_000_000_000 + dev * 104_729).to_string(),
                devicename: format!("ACME-{kind}-{dev:03}"),
                groupid,
                groupname,
                start_date: fmt_ts(start),
                end_date: fmt_ts(end),
                fee: "0.00",
                currency: if rng.random_bool(0.2) { "None" } else { "EUR" },
                billing_state: match rng.random_range(0..10) {
                    0 => "Billed",
                    1 => "DoNotBill",
                    _ => "Bill",
                },
                notes: rng.random_bool(0.1).then(|| format!("see #{}", 10_000 + rng.random_range(0..span))),
                support_session_type: if case.is_some() { 2 } else { 1 },
                case,
            };
            recs.push(g.into_rec(start));
        }
        let mut st = self.inner.lock();
        st.by_id.reserve(recs.len());
        for rec in &recs {
            st.index(rec);
        }
        st.recs.extend(recs);
        // Stable and run-aware, so appending an already sorted batch is close to linear.
        st.recs.sort_by(|a, b| a.key.cmp(&b.key));
        st.generation += 1;
    }

    pub fn push_fault(&self, fault: Fault) {
        self.inner.lock().faults.push_back(fault);
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.inner.lock().log.iter().map(|(_, l)| l.clone()).collect()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().log.clear();
    }

    /// A fresh single-use code, as if the user had approved the app; not bound to a redirect_uri.
    pub fn authorization_code(&self) -> String {
        let code = new_token();
        let auth = AuthCode { issued: Instant::now(), redirect_uri: None, client_id: None };
        self.inner.lock().codes.insert(code.clone(), auth);
        code
    }

    pub fn expire_access_tokens(&self) {
        for t in self.inner.lock().access.values_mut() {
            t.expired = true;
        }
    }

    /// Also restarts the call counter.
    pub fn set_rate_limit(&self, rl: Option<RateLimit>) {
        let mut st = self.inner.lock();
        st.rate_limit = rl;
        st.calls = 0;
    }

    pub fn refresh_count(&self) -> usize {
        self.inner.lock().refresh_count
    }

    /// Refresh tokens the token endpoint would still accept (with rotation: the latest of
    /// each chain), to check a stored one without spending it.
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.inner.lock().refresh.iter().cloned().collect()
    }

    pub fn sessions(&self) -> Vec<Value> {
        self.inner.lock().sessions.iter().cloned().map(Value::Object).collect()
    }

    /// Simulates a technician connecting with a service case's code. Panics on an unknown code,
    /// because that is a bug in the calling test, not a situation the vendor can produce.
    pub fn connect_session(
        &self,
        code: &str,
        username: &str,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        notes: Option<&str>,
    ) -> String {
        let mut st = self.inner.lock();
        let Some(s) = st.session_index(code).map(|i| st.sessions[i].clone()) else {
            drop(st);
            panic!("connect_session: unknown session code {code:?}");
        };
        let groupid = s.get("groupid").and_then(Value::as_str).unwrap_or_default();
        let id = uuid::Uuid::new_v4().to_string();
        let dev = rand::rng().random_range(0..500u64);
        let mut r = json!({
            "id": id, "userid": userid_for(username), "username": username,
            "deviceid": (1_000_000_000 + dev * 104_729).to_string(),
            "devicename": format!("CUST-PC-{dev:03}"),
            "groupid": groupid, "groupname": st.group_name(groupid),
            "start_date": fmt_ts(start),
            "fee": "0.00", "currency": "EUR", "billing_state": "Bill", "support_session_type": 2,
        });
        if let Some(end) = end {
            r["end_date"] = json!(fmt_ts(end));
        }
        if let Some(notes) = notes {
            r["notes"] = json!(notes);
        }
        let copy = [
            ("code", "session_code"),
            ("assigned_userid", "assigned_userid"),
            ("assigned_at", "assigned_at"),
            ("created_at", "session_created_at"),
            ("valid_until", "valid_until"),
            ("description", "session_note"),
            ("custom_api", "custom_api"),
            ("end_customer", "end_customer"),
        ];
        for (from, to) in copy {
            if let Some(v) = s.get(from) {
                r[to] = v.clone();
            }
        }
        st.insert(Rec::new(&r));
        id
    }

    /// Stops the server, letting in-flight requests finish (see [`crate::Served::stop`]).
    pub async fn shutdown(mut self) {
        self.server.stop().await;
    }
}

fn router(inner: Arc<Inner>) -> Router {
    let protected = Router::new()
        .route("/reports/connections", get(list_connections))
        .route("/reports/connections/{id}", put(put_connection).delete(delete_connection))
        .route("/sessions", get(list_sessions).post(create_session))
        .route("/sessions/{code}", get(get_session).put(put_session))
        .route_layer(middleware::from_fn_with_state(inner.clone(), require_auth));
    // Swagger spells the OAuth paths "OAuth2"; the PDF says "oauth2".
    let open = Router::new()
        .route("/ping", get(ping))
        .route("/oauth2/token", post(token))
        .route("/OAuth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
        .route("/OAuth2/revoke", post(revoke))
        .route("/oauth2/authorize", get(authorize));
    let unknown = || async { not_found("The resource") };
    Router::new()
        .nest("/api/v1", protected.merge(open))
        // The login host serves the authorize page at the root (§3.2).
        .route("/oauth2/authorize", get(authorize))
        .fallback(unknown)
        .layer(middleware::from_fn_with_state(inner.clone(), log_and_faults))
        .with_state(inner)
}

async fn log_and_faults(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let entry = RequestLog {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or_default().to_string(),
        authorized: req.headers().contains_key(header::AUTHORIZATION),
        token: bearer(req.headers()).map(token_fingerprint),
        status: 0,
    };
    // Logged before answering so a test can see requests that a delay fault is still holding.
    let (seq, fault) = {
        let mut st = inner.lock();
        let seq = st.log_seq;
        st.log_seq += 1;
        if st.log.len() >= LOG_CAP {
            st.log.pop_front();
        }
        let fault = st.take_fault(&entry.path);
        st.log.push_back((seq, entry));
        (seq, fault)
    };
    let resp = match fault {
        None => inner.mis.apply(next.run(req).await).await,
        Some(f) => {
            if let Some(d) = f.delay {
                tokio::time::sleep(d).await;
            }
            if f.status == 0 {
                next.run(req).await
            } else {
                fault_response(&f)
            }
        }
    };
    let mut st = inner.lock();
    let at = st.log.partition_point(|(s, _)| *s < seq);
    if let Some((_, l)) = st.log.get_mut(at).filter(|(s, _)| *s == seq) {
        l.status = resp.status().as_u16();
    }
    resp
}

fn fault_response(f: &Fault) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, f.body.clone()).into_response();
    if f.body.trim_start().starts_with(['{', '[']) {
        let json = HeaderValue::from_static("application/json");
        resp.headers_mut().insert(header::CONTENT_TYPE, json);
    }
    for (k, v) in &f.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

async fn require_auth(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    {
        let mut st = inner.lock();
        let Some(token) = bearer(req.headers()) else {
            return invalid_token("The request requires an access token").into_response();
        };
        match st.token_status(&inner.opts, token) {
            Tok::Valid => {}
            Tok::Expired => {
                let expired = api_err(StatusCode::UNAUTHORIZED, "token_expired", "The access token expired", E_EXPIRED);
                return expired.into_response();
            }
            Tok::Invalid => return invalid_token("The access token is invalid").into_response(),
        }
        if let Some(resp) = st.rate_limited() {
            return resp;
        }
    }
    next.run(req).await
}

async fn ping(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let st = inner.lock();
    let valid = bearer(&headers).is_some_and(|t| matches!(st.token_status(&inner.opts, t), Tok::Valid));
    Json(json!({ "token_valid": valid })).into_response()
}

async fn list_connections(State(inner): State<Arc<Inner>>, RawQuery(q): RawQuery) -> Reply {
    let p = parse_pairs(q.as_deref().unwrap_or_default());
    let filter = ConnFilter::parse(&p, inner.opts.company_token)?;
    let offset = p.get("offset_id").map(|o| o.trim().to_lowercase()).filter(|o| !o.is_empty());
    let page = inner.opts.page_size.max(1);
    let body = inner.lock().connections_page(&filter, offset.as_deref(), page, inner.opts.company_token)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn put_connection(State(inner): State<Arc<Inner>>, Path(id): Path<String>, body: Bytes) -> Reply {
    let body = parse_json_object(&body)?;
    let mut patch = Map::new();
    if let Some(state) = opt_str(&body, "billing_state")? {
        if !["Bill", "Billed", "DoNotBill"].contains(&state.as_str()) {
            return Err(bad("billing_state must be Bill, Billed or DoNotBill"));
        }
        patch.insert("billing_state".into(), json!(state));
    }
    if let Some(notes) = opt_str(&body, "notes")? {
        patch.insert("notes".into(), json!(notes));
    }
    if !inner.lock().update(&id, &Value::Object(patch)) {
        return Err(not_found("The connection report"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_connection(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Reply {
    if !inner.lock().delete(&id) {
        return Err(not_found("The connection report"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_session(State(inner): State<Arc<Inner>>, body: Bytes) -> Reply {
    let s = inner.lock().create_session(&parse_json_object(&body)?)?;
    let code = s.get("code").and_then(Value::as_str).unwrap_or_default();
    let location = format!("{}/api/v1/sessions/{code}", inner.base_url);
    let mut resp = Json(Value::Object(s)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list_sessions(State(inner): State<Arc<Inner>>, RawQuery(q): RawQuery) -> Reply {
    let p = parse_pairs(q.as_deref().unwrap_or_default());
    let (mut open, mut closed) = (true, false);
    if let Some(states) = p.get("state").filter(|s| !s.trim().is_empty()) {
        open = false;
        for part in states.split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "open" => open = true,
                "closed" => closed = true,
                _ => return Err(bad("state must be open, closed or open,closed")),
            }
        }
    }
    let full = p.get("full_list").map(|v| parse_bool(v).ok_or_else(|| bad("full_list must be true or false")));
    let full = full.transpose()?.unwrap_or(false);
    let text = |s: &Map<String, Value>, k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let field_is = |s: &Map<String, Value>, k: &str| p.get(k).is_none_or(|w| text(s, k).eq_ignore_ascii_case(w.trim()));
    let st = inner.lock();
    // Creation order reversed is newest first.
    let list: Vec<&Map<String, Value>> = st
        .sessions
        .iter()
        .rev()
        .filter(|s| if text(s, "state").eq_ignore_ascii_case("closed") { closed } else { open })
        .filter(|s| field_is(s, "groupid") && field_is(s, "assigned_userid"))
        .collect();
    let first = match p.get("offset").map(|o| norm_code(o)).filter(|o| !o.is_empty()) {
        None => 0,
        Some(o) => {
            let at = list.iter().position(|s| norm_code(&text(s, "code")) == o);
            at.ok_or_else(|| bad("offset does not name a listed session"))? + 1
        }
    };
    let end = (first + inner.opts.page_size.max(1)).min(list.len());
    let minimal = ["code", "state", "online", "groupid", "support_session_type"];
    let shown = |k: &str| minimal.contains(&k) || (full && k != "webclient_supporter_link");
    let items: Vec<Value> = list[first..end]
        .iter()
        .map(|s| Value::Object(s.iter().filter(|(k, _)| shown(k)).map(|(k, v)| (k.clone(), v.clone())).collect()))
        .collect();
    let mut body = json!({ "sessions": items });
    if end < list.len() {
        body["sessions_remaining"] = json!(list.len() - end);
        body["next_offset"] = json!(text(list[end - 1], "code"));
    }
    Ok(Json(body).into_response())
}

async fn get_session(State(inner): State<Arc<Inner>>, Path(code): Path<String>) -> Reply {
    let st = inner.lock();
    let i = st.session_index(&code).ok_or_else(|| not_found("The session"))?;
    Ok(Json(Value::Object(st.sessions[i].clone())).into_response())
}

async fn put_session(State(inner): State<Arc<Inner>>, Path(code): Path<String>, body: Bytes) -> Reply {
    let body = parse_json_object(&body)?;
    let mut st = inner.lock();
    let i = st.session_index(&code).ok_or_else(|| not_found("The session"))?;
    // Work on a copy so a rejected PUT leaves the session untouched.
    let mut s = st.sessions[i].clone();
    st.apply_session_fields(&mut s, &body)?;
    match opt_str(&body, "state")?.map(|v| v.to_ascii_lowercase()).as_deref() {
        None => {}
        Some("closed") => {
            if s.get("state").and_then(Value::as_str) != Some("Closed") {
                s.insert("closed_at".into(), json!(fmt_ts(Utc::now())));
            }
            s.insert("state".into(), json!("Closed"));
        }
        Some("open") => {
            s.remove("closed_at");
            s.insert("state".into(), json!("Open"));
        }
        Some(_) => return Err(bad("state must be open or closed")),
    }
    st.sessions[i] = s;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut resp = token_grant(&inner, &headers, &body).unwrap_or_else(IntoResponse::into_response);
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn token_grant(inner: &Inner, headers: &HeaderMap, body: &[u8]) -> Reply {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // The vendor takes form encoding but says JSON works too (spec §3.2).
    let p: HashMap<String, String> = if content_type.is_some_and(|v| v.contains("json")) {
        let m = parse_json_object(body)?;
        m.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect()
    } else {
        parse_pairs(&String::from_utf8_lossy(body))
    };
    let param = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant = param("grant_type").ok_or_else(|| bad("grant_type is required"))?;
    if let Some((id, secret)) = &inner.opts.oauth_client {
        if param("client_id") != Some(id.as_str()) || param("client_secret") != Some(secret.as_str()) {
            let desc = "Client authentication failed";
            return Err(api_err(StatusCode::UNAUTHORIZED, "invalid_client", desc, E_INVALID_CLIENT));
        }
    }
    let mut st = inner.lock();
    let keep = match grant {
        "authorization_code" => {
            let code = param("code").and_then(|c| st.codes.remove(c));
            let code = code.ok_or_else(|| bad("The authorization code is invalid or was already used"))?;
            if code.issued.elapsed() > CODE_VALIDITY {
                return Err(bad("The authorization code expired"));
            }
            if code.redirect_uri.is_some() && code.redirect_uri.as_deref() != param("redirect_uri") {
                return Err(bad("redirect_uri does not match the authorization request"));
            }
            if code.client_id.is_some() && code.client_id.as_deref() != param("client_id") {
                return Err(bad("client_id does not match the authorization request"));
            }
            None
        }
        "refresh_token" => {
            let rt = param("refresh_token").filter(|rt| st.refresh.contains(*rt));
            let rt = rt.ok_or_else(|| bad("The refresh token is invalid or was already used"))?;
            st.refresh_count += 1;
            if inner.opts.rotate_refresh_tokens {
                st.refresh.remove(rt);
                None
            } else {
                Some(rt.to_string())
            }
        }
        _ => return Err(bad("grant_type must be authorization_code or refresh_token")),
    };
    Ok(Json(st.issue_tokens(&inner.opts, keep)).into_response())
}

async fn revoke(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Reply {
    let token = bearer(&headers).ok_or_else(|| invalid_token("The request requires an access token"))?;
    let mut st = inner.lock();
    if let Some(a) = st.access.remove(token) {
        st.refresh.remove(&a.refresh);
    } else if !inner.opts.script_tokens.iter().any(|t| t == token) {
        return Err(invalid_token("The access token is invalid"));
    }
    Ok(StatusCode::OK.into_response())
}

/// Auto-approves the login so a test can follow the redirect straight into the token exchange.
async fn authorize(State(inner): State<Arc<Inner>>, RawQuery(q): RawQuery) -> Reply {
    let p = parse_pairs(q.as_deref().unwrap_or_default());
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err(bad("response_type must be code"));
    }
    let redirect = p.get("redirect_uri").filter(|r| !r.is_empty());
    let redirect = redirect.ok_or_else(|| bad("redirect_uri is required"))?;
    let client_id = p.get("client_id").cloned();
    if inner.opts.oauth_client.as_ref().is_some_and(|(id, _)| client_id.as_ref() != Some(id)) {
        return Err(bad("unknown client_id"));
    }
    let code = new_token();
    let auth = AuthCode { issued: Instant::now(), redirect_uri: Some(redirect.clone()), client_id };
    inner.lock().codes.insert(code.clone(), auth);
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let mut location = format!("{redirect}{sep}code={}", encode(&code));
    if let Some(state) = p.get("state") {
        location.push_str(&format!("&state={}", encode(state)));
    }
    let location = HeaderValue::from_str(&location).map_err(|_| bad("redirect_uri is not a valid URL"))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

fn parse_json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    serde_json::from_slice(body).map_err(|_| bad("request body must be a JSON object"))
}

/// `null` and "" count as absent; any other non-string is a client error.
fn opt_str(m: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(_) => Err(bad(format!("{k} must be a string"))),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Accepts RFC 3339, a zone-less datetime (UTC per spec §0) or a bare date (00:00:00Z).
fn parse_when(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Some(d.and_utc());
    }
    Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?.and_utc())
}

fn fmt_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Codes appear as `s119-457-589`, `S119457589` or `s119 457 589` depending on the source.
fn norm_code(s: &str) -> String {
    s.chars().filter(|c| *c != '-' && !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

fn random_code(rng: &mut impl Rng) -> String {
    let first = rng.random_range(100..1000);
    let mut d = || rng.random_range(0..1000);
    format!("s{first}-{:03}-{:03}", d(), d())
}

fn is_prefixed_id(s: &str, prefix: char) -> bool {
    s.strip_prefix(prefix).is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn alnum(rng: &mut impl Rng, n: usize) -> String {
    rng.sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

fn new_token() -> String {
    let mut rng = rand::rng();
    let digits = rng.random_range(10_000..100_000_000u32);
    format!("{digits}-{}", alnum(&mut rng, 20))
}

fn userid_for(username: &str) -> String {
    if let Some((id, _)) = TECHS.iter().find(|(_, n)| *n == username) {
        return id.to_string();
    }
    let h = u64::from_str_radix(&token_fingerprint(username), 16).unwrap_or_default();
    format!("u{}", h % 90_000_000 + 10_000_000)
}

fn parse_pairs(q: &str) -> HashMap<String, String> {
    let pairs = q.split('&').filter(|kv| !kv.is_empty());
    pairs.map(|kv| kv.split_once('=').unwrap_or((kv, ""))).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    s.bytes().map(|b| if keep(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::RequestBuilder;

    const TOKEN: &str = "54213-2YotnFZFEjr1zCsicMWp";
    const CLIENT: (&str, &str) = ("12333-133Ea4Hdf3e9ec0543fX", "s3cr3t");

    async fn sim(opts: SimOptions) -> TeamViewerSim {
        let opts = SimOptions { script_tokens: vec![TOKEN.into()], ..opts };
        TeamViewerSim::start(opts).await.expect("simulator starts")
    }

    async fn call(req: RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    fn conns(sim: &TeamViewerSim, query: &[(&str, &str)]) -> RequestBuilder {
        reqwest::Client::new().get(format!("{}/reports/connections", sim.api_url())).bearer_auth(TOKEN).query(query)
    }

    fn rec(id: &str, start: &str) -> Value {
        json!({
            "id": id, "userid": "u11293276", "username": "Jon Snow",
            "deviceid": "1234567890", "devicename": "ACME-LT-042",
            "groupid": "g272032545", "groupname": "Helpdesk",
            "start_date": start, "end_date": start, "fee": "0.00", "currency": "EUR",
            "billing_state": "Bill", "support_session_type": 1
        })
    }

    fn ids(body: &Value) -> Vec<String> {
        body["records"]
            .as_array()
            .expect("records array")
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("").to_string())
            .collect()
    }

    async fn oauth_tokens(sim: &TeamViewerSim) -> Value {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", &sim.authorization_code()),
            ("redirect_uri", "http://localhost/cb"),
            ("client_id", CLIENT.0),
            ("client_secret", CLIENT.1),
        ];
        let url = format!("{}/oauth2/token", sim.api_url());
        let (status, headers, body) = call(reqwest::Client::new().post(url).form(&form)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["pragma"], "no-cache");
        body
    }

    async fn refresh(sim: &TeamViewerSim, rt: &str, secret: &str) -> (u16, Value) {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", CLIENT.0),
            ("client_secret", secret),
        ];
        let url = format!("{}/oauth2/token", sim.api_url());
        let (status, _, body) = call(reqwest::Client::new().post(url).form(&form)).await;
        (status, body)
    }

    #[tokio::test]
    async fn pages_through_three_pages_with_exclusive_offset() {
        let sim = sim(SimOptions { page_size: 2, ..SimOptions::default() }).await;
        // Inserted out of order, with a start_date tie broken by id.
        sim.add_connection(rec("cccccccc-0000-4000-8000-000000000003", "2024-04-16T10:00:02Z"));
        sim.add_connection(rec("aaaaaaaa-0000-4000-8000-000000000001", "2024-04-16T10:00:00Z"));
        sim.add_connection(rec("eeeeeeee-0000-4000-8000-000000000005", "2024-04-16T10:00:04Z"));
        sim.add_connection(rec("dddddddd-0000-4000-8000-000000000004", "2024-04-16T10:00:02Z"));
        sim.add_connection(rec("bbbbbbbb-0000-4000-8000-000000000002", "2024-04-16T10:00:01Z"));
        assert_eq!(sim.connection_count(), 5);

        let (status, _, p1) = call(conns(&sim, &[])).await;
        assert_eq!(status, 200);
        assert_eq!(p1["records_remaining"], 3);
        assert_eq!(p1["next_offset"], "bbbbbbbb-0000-4000-8000-000000000002");
        // Cursor ids compare case-insensitively.
        let cursor = p1["next_offset"].as_str().unwrap_or("").to_uppercase();
        let (_, _, p2) = call(conns(&sim, &[("offset_id", &cursor)])).await;
        assert_eq!(p2["records_remaining"], 1);
        let cursor = p2["next_offset"].as_str().unwrap_or("").to_string();
        let (_, _, p3) = call(conns(&sim, &[("offset_id", &cursor)])).await;
        assert!(p3.get("records_remaining").is_none() && p3.get("next_offset").is_none());

        let all: Vec<String> = [ids(&p1), ids(&p2), ids(&p3)].concat();
        let prefixes: Vec<&str> = all.iter().map(|i| &i[..1]).collect();
        assert_eq!(prefixes, ["a", "b", "c", "d", "e"]);

        let (status, _, body) = call(conns(&sim, &[("offset_id", "nope")])).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn date_filters_are_inclusive_exclusive_on_start_date() {
        let sim = sim(SimOptions::default()).await;
        sim.add_connection(rec("00000000-0000-4000-8000-000000000001", "2024-04-15T23:59:59Z"));
        sim.add_connection(rec("00000000-0000-4000-8000-000000000002", "2024-04-16T00:00:00Z"));
        sim.add_connection(rec("00000000-0000-4000-8000-000000000003", "2024-04-16T12:00:00Z"));
        sim.add_connection(rec("00000000-0000-4000-8000-000000000004", "2024-04-17T00:00:00Z"));

        let day = [("from_date", "2024-04-16"), ("to_date", "2024-04-17")];
        let (_, _, body) = call(conns(&sim, &day)).await;
        let got: Vec<String> = ids(&body).iter().map(|i| i[35..].to_string()).collect();
        assert_eq!(got, ["2", "3"]);

        let from = [("from_date", "2024-04-16T12:00:00Z")];
        let (_, _, body) = call(conns(&sim, &from)).await;
        assert_eq!(ids(&body).len(), 2);

        // Malformed records always come first so the client sees them and quarantines them.
        sim.add_connection(json!({ "id": "broken-1", "username": "Jon Snow" }));
        let (_, _, body) = call(conns(&sim, &day)).await;
        assert_eq!(ids(&body)[0], "broken-1");
        assert_eq!(ids(&body).len(), 3);

        let (status, _, body) = call(conns(&sim, &[("from_date", "yesterday")])).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_request");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn session_code_and_has_code_filters() {
        let sim = sim(SimOptions::default()).await;
        let mut with_code = rec("00000000-0000-4000-8000-000000000001", "2024-04-16T10:00:00Z");
        with_code["session_code"] = json!("s119-457-589");
        let mut other = rec("00000000-0000-4000-8000-000000000002", "2024-04-16T10:01:00Z");
        other["session_code"] = json!("s222-333-444");
        sim.add_connection(with_code);
        sim.add_connection(other);
        sim.add_connection(rec("00000000-0000-4000-8000-000000000003", "2024-04-16T10:02:00Z"));

        for code in ["s119457589", "S119-457-589", "s119-457-589"] {
            let (_, _, body) = call(conns(&sim, &[("session_code", code)])).await;
            assert_eq!(ids(&body), ["00000000-0000-4000-8000-000000000001"], "{code}");
        }
        let (_, _, body) = call(conns(&sim, &[("has_code", "True")])).await;
        assert_eq!(ids(&body).len(), 2);
        let (_, _, body) = call(conns(&sim, &[("has_code", "FALSE")])).await;
        assert_eq!(ids(&body).len(), 1);
        let (status, _, _) = call(conns(&sim, &[("has_code", "maybe")])).await;
        assert_eq!(status, 400);

        let later = [("session_code", "s119457589"), ("from_date", "2024-04-16T10:00:01Z")];
        let (_, _, body) = call(conns(&sim, &later)).await;
        assert!(ids(&body).is_empty());
        let id = "00000000-0000-4000-8000-000000000001";
        sim.update_connection(id, json!({ "session_code": null }));
        let (_, _, body) = call(conns(&sim, &[("session_code", "s119457589")])).await;
        assert!(ids(&body).is_empty());
        sim.update_connection(id, json!({ "session_code": "S119 457 589" }));
        let (_, _, body) = call(conns(&sim, &[("session_code", "s119-457-589")])).await;
        assert_eq!(ids(&body), [id]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn missing_and_expired_tokens_get_401() {
        let sim = sim(SimOptions::default()).await;
        let client = reqwest::Client::new();
        let url = format!("{}/reports/connections", sim.api_url());
        let (status, headers, body) = call(client.get(&url)).await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert_eq!((body["error"].as_str(), body["error_code"].as_u64()), (Some("invalid_token"), Some(2)));

        let ping = format!("{}/ping", sim.api_url());
        let (status, _, body) = call(client.get(&ping)).await;
        assert_eq!((status, body["token_valid"].as_bool()), (200, Some(false)));

        let tokens = oauth_tokens(&sim).await;
        let access = tokens["access_token"].as_str().unwrap_or_default().to_string();
        let (digits, rest) = access.split_once('-').unwrap_or_default();
        assert!(digits.bytes().all(|b| b.is_ascii_digit()) && rest.len() == 20);
        assert_eq!(tokens["expires_in"], 86_400);
        assert_eq!(call(client.get(&url).bearer_auth(&access)).await.0, 200);
        let (_, _, body) = call(client.get(&ping).bearer_auth(&access)).await;
        assert_eq!(body["token_valid"], true);

        sim.expire_access_tokens();
        let (status, headers, body) = call(client.get(&url).bearer_auth(&access)).await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert_eq!(body["error"], "token_expired");
        assert_eq!(body["error_code"], 1);
        assert_eq!(body["error_description"], "The access token expired");
        let (_, _, body) = call(client.get(&ping).bearer_auth(&access)).await;
        assert_eq!(body["token_valid"], false);
        // Script tokens have no expiry.
        assert_eq!(call(client.get(&url).bearer_auth(TOKEN)).await.0, 200);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_are_single_use() {
        let opts = SimOptions { oauth_client: Some((CLIENT.0.into(), CLIENT.1.into())), ..SimOptions::default() };
        let sim = sim(opts.clone()).await;
        let first = oauth_tokens(&sim).await;
        let old_rt = first["refresh_token"].as_str().unwrap_or_default();

        let (status, body) = refresh(&sim, old_rt, "wrong").await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
        let (status, second) = refresh(&sim, old_rt, CLIENT.1).await;
        assert_eq!(status, 200);
        let new_rt = second["refresh_token"].as_str().unwrap_or_default();
        assert_ne!(new_rt, old_rt);
        let (status, body) = refresh(&sim, old_rt, CLIENT.1).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
        assert_eq!(sim.refresh_count(), 1);

        // Revoking kills the access token and the refresh token issued with it.
        let access = second["access_token"].as_str().unwrap_or_default();
        let client = reqwest::Client::new();
        let revoke = format!("{}/oauth2/revoke", sim.api_url());
        assert_eq!(call(client.post(&revoke).bearer_auth(access)).await.0, 200);
        let url = format!("{}/reports/connections", sim.api_url());
        let (status, _, body) = call(client.get(&url).bearer_auth(access)).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));
        assert_eq!(refresh(&sim, new_rt, CLIENT.1).await.0, 400);
        sim.shutdown().await;

        let sim = self::sim(SimOptions { rotate_refresh_tokens: false, ..opts }).await;
        let rt = oauth_tokens(&sim).await["refresh_token"].clone();
        let rt = rt.as_str().unwrap_or_default();
        for _ in 0..2 {
            let (status, body) = refresh(&sim, rt, CLIENT.1).await;
            assert_eq!((status, body["refresh_token"].as_str()), (200, Some(rt)));
        }
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn authorize_redirects_with_code_and_state() {
        let sim = sim(SimOptions::default()).await;
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let query = [
            ("response_type", "code"),
            ("client_id", CLIENT.0),
            ("redirect_uri", "http://localhost/cb"),
            ("state", "xyz 1"),
        ];
        let url = format!("{}/oauth2/authorize", sim.base_url);
        let (status, headers, _) = call(client.get(url).query(&query)).await;
        assert_eq!(status, 302);
        let location = headers["location"].to_str().unwrap_or_default();
        assert!(location.starts_with("http://localhost/cb?code="), "{location}");
        assert!(location.ends_with("&state=xyz%201"), "{location}");
        let code = decode(&location["http://localhost/cb?code=".len()..location.len() - 14]);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://localhost/cb"),
            ("client_id", CLIENT.0),
            ("client_secret", CLIENT.1),
        ];
        let token_url = format!("{}/oauth2/token", sim.api_url());
        let (status, _, body) = call(client.post(&token_url).form(&form)).await;
        assert_eq!(status, 200, "{body}");
        // Codes are single-use.
        assert_eq!(call(client.post(&token_url).form(&form)).await.0, 400);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn rate_limit_refuses_every_nth_call() {
        let sim = sim(SimOptions::default()).await;
        sim.set_rate_limit(Some(RateLimit::Forbidden { every_nth: 3 }));
        let mut statuses = Vec::new();
        let mut refused = Value::Null;
        for _ in 0..4 {
            let (status, _, body) = call(conns(&sim, &[])).await;
            statuses.push(status);
            if status == 403 {
                refused = body;
            }
        }
        assert_eq!(statuses, [200, 200, 403, 200]);
        assert_eq!(refused["error"], "rate_limit_reached");
        assert_eq!(refused["error_code"], 4);
        assert_eq!(refused["error_signature"], 123456789);

        sim.set_rate_limit(Some(RateLimit::TooMany { every_nth: 1, retry_after: Some("7".into()) }));
        let (status, headers, _) = call(conns(&sim, &[])).await;
        assert_eq!((status, headers["retry-after"].to_str().ok()), (429, Some("7")));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn faults_take_precedence_and_are_logged() {
        let sim = sim(SimOptions::default()).await;
        sim.push_fault(Fault::new("/reports", 503));
        sim.push_fault(Fault {
            headers: vec![("Retry-After".into(), "2".into())],
            body: r#"{"error":"rate_limit_reached"}"#.into(),
            ..Fault::new("/api/v1/sessions", 429)
        });
        // The fault fires even without a token.
        let url = format!("{}/reports/connections", sim.api_url());
        assert_eq!(call(reqwest::Client::new().get(&url)).await.0, 503);
        assert_eq!(call(conns(&sim, &[("has_code", "true")])).await.0, 200);

        let sessions = format!("{}/sessions", sim.api_url());
        let req = reqwest::Client::new().get(&sessions).bearer_auth(TOKEN);
        let (status, headers, body) = call(req).await;
        assert_eq!((status, headers["retry-after"].to_str().ok()), (429, Some("2")));
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body["error"], "rate_limit_reached");

        sim.push_fault(Fault { delay: Some(Duration::from_millis(200)), ..Fault::new("/reports", 0) });
        let started = Instant::now();
        assert_eq!(call(conns(&sim, &[])).await.0, 200);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let log = sim.requests();
        let statuses: Vec<u16> = log.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [503, 200, 429, 200]);
        assert!(!log[0].authorized && log[0].token.is_none());
        assert_eq!(log[1].query, "has_code=true");
        assert_eq!(log[1].token.as_deref(), Some(token_fingerprint(TOKEN).as_str()));
        sim.clear_requests();
        assert!(sim.requests().is_empty());
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn service_case_connection_carries_custom_api() {
        let sim = sim(SimOptions::default()).await;
        let client = reqwest::Client::new();
        let url = format!("{}/sessions", sim.api_url());
        let (status, _, body) = call(client.post(&url).bearer_auth(TOKEN).json(&json!({}))).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
        let too_long = json!({ "groupname": "Helpdesk", "custom_api": "x".repeat(4001) });
        let (status, _, _) = call(client.post(&url).bearer_auth(TOKEN).json(&too_long)).await;
        assert_eq!(status, 400);

        let create = json!({
            "groupname": "Helpdesk",
            "description": "INC-10423: printer offline",
            "custom_api": "{\"ticket_id\":\"10423\"}",
            "end_customer": { "name": "Peter Niedhelp", "email": "helpme@example.com" },
        });
        let (status, headers, s) = call(client.post(&url).bearer_auth(TOKEN).json(&create)).await;
        assert_eq!(status, 200, "{s}");
        let code = s["code"].as_str().unwrap_or_default().to_string();
        let bare = norm_code(&code);
        assert!(code.len() == 12 && code.starts_with('s') && bare.len() == 10, "{code}");
        let location = headers["location"].to_str().unwrap_or_default();
        assert_eq!(location, format!("{}/api/v1/sessions/{code}", sim.base_url));
        assert_eq!(s["state"], "Open");
        assert_eq!(s["groupid"], "g272032545");
        let link = format!("https://get.teamviewer.com/v15/{bare}");
        assert_eq!(s["end_customer_link"], link.as_str());
        let created = parse_when(s["created_at"].as_str().unwrap_or_default());
        let valid = parse_when(s["valid_until"].as_str().unwrap_or_default());
        assert_eq!(valid.zip(created).map(|(v, c)| v - c), Some(TimeDelta::hours(24)));

        let start = Utc::now() - TimeDelta::minutes(20);
        let end = Some(start + TimeDelta::minutes(12));
        let id = sim.connect_session(&bare, "Arya Stark", start, end, Some("fixed driver"));
        let (_, _, body) = call(conns(&sim, &[("session_code", &code)])).await;
        let r = &body["records"][0];
        assert_eq!(r["id"], id.as_str());
        assert_eq!(r["custom_api"], "{\"ticket_id\":\"10423\"}");
        assert_eq!(r["session_note"], "INC-10423: printer offline");
        assert_eq!(r["end_customer"]["email"], "helpme@example.com");
        assert_eq!(r["assigned_userid"], SIM_USERID);
        assert_eq!(r["notes"], "fixed driver");

        let (_, _, list) = call(client.get(&url).bearer_auth(TOKEN)).await;
        assert_eq!(list["sessions"][0]["code"], code.as_str());
        assert!(list["sessions"][0].get("description").is_none());
        let one = format!("{url}/{code}");
        let closing = json!({ "state": "closed" });
        let (status, _, _) = call(client.put(&one).bearer_auth(TOKEN).json(&closing)).await;
        assert_eq!(status, 204);
        let (_, _, got) = call(client.get(&one).bearer_auth(TOKEN)).await;
        assert_eq!(got["state"], "Closed");
        assert!(got["closed_at"].is_string());
        let (_, _, list) = call(client.get(&url).bearer_auth(TOKEN)).await;
        assert_eq!(list["sessions"], json!([]));
        let q = [("state", "open,closed"), ("full_list", "true")];
        let (_, _, list) = call(client.get(&url).bearer_auth(TOKEN).query(&q)).await;
        assert_eq!(list["sessions"][0]["description"], "INC-10423: printer offline");
        assert_eq!(sim.sessions().len(), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn put_and_delete_reports() {
        let sim = sim(SimOptions { page_size: 1, company_token: true, ..SimOptions::default() }).await;
        let a = "00000000-0000-4000-8000-00000000000a";
        let b = "00000000-0000-4000-8000-00000000000b";
        sim.add_connection(rec(a, "2024-04-16T10:00:00Z"));
        sim.add_connection(rec(b, "2024-04-16T11:00:00Z"));
        let client = reqwest::Client::new();
        let url = format!("{}/reports/connections", sim.api_url());
        let patch = json!({ "notes": "Ticket #10423" });
        let put = client.put(format!("{url}/{a}")).bearer_auth(TOKEN).json(&patch);
        assert_eq!(call(put).await.0, 204);
        let notes = sim.connection(a).map(|r| r["notes"].clone());
        assert_eq!(notes, Some(json!("Ticket #10423")));
        let missing = client.put(format!("{url}/nope")).bearer_auth(TOKEN).json(&patch);
        let (status, _, body) = call(missing).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

        let (_, _, page) = call(conns(&sim, &[])).await;
        assert!(page["records"][0].get("devicename").is_none());
        assert_eq!(call(client.delete(format!("{url}/{a}")).bearer_auth(TOKEN)).await.0, 204);
        assert_eq!(sim.connection_count(), 1);
        // A cursor naming a deleted report still resumes after it.
        let (_, _, page) = call(conns(&sim, &[("offset_id", a)])).await;
        assert_eq!(ids(&page), [b]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn generate_is_deterministic_and_realistic() {
        let t0 = parse_when("2024-04-16T08:00:00Z").unwrap_or_default();
        let one = sim(SimOptions::default()).await;
        let two = sim(SimOptions::default()).await;
        one.generate(3000, 42, t0);
        two.generate(3000, 42, t0);
        let (_, _, a) = call(conns(&one, &[])).await;
        let (_, _, b) = call(conns(&two, &[])).await;
        assert_eq!(a, b);
        assert_eq!(a["records_remaining"], 2000);
        let (_, _, coded) = call(conns(&one, &[("has_code", "true")])).await;
        let n = coded["records"].as_array().map_or(0, Vec::len);
        assert!((700..1100).contains(&n), "{n}");
        let r = &coded["records"][0];
        assert!(r["session_note"].as_str().unwrap_or_default().starts_with("INC-"));
        assert!(r["custom_api"].as_str().unwrap_or_default().contains("ticket_id"));
        let id = a["records"][0]["id"].as_str().unwrap_or_default();
        assert_eq!(id, id.to_lowercase());
        assert_eq!(a["records"][0]["start_date"], "2024-04-16T08:00:00Z");
        one.shutdown().await;
        two.shutdown().await;
    }

    #[tokio::test]
    async fn generated_index_matches_rec_new() {
        let sim = sim(SimOptions::default()).await;
        sim.generate(500, 9, Utc::now());
        let st = sim.inner.lock();
        for rec in &st.recs {
            let again = Rec::new(&serde_json::from_str(&rec.json).unwrap_or_default());
            assert_eq!((&again.key, &again.f), (&rec.key, &rec.f), "{}", rec.json);
        }
    }
}
