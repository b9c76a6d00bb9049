//! One error type for every vendor API call: what the vendor answered (status, its own
//! error code, its message) and how the retry loop treats it, so that no vendor's code is
//! flattened into a string on the way to the operator.

use std::time::Duration;

/// What a failed call means, whichever vendor answered. Each vendor's classifier maps its
/// own codes here (Splashtop's `result`, Zoom's `code`, TeamViewer's `error`), and keeps
/// the code itself in [`ApiError::code`] / [`ApiError::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The token was rejected: invalid or expired.
    BadToken,
    /// Authenticated but not permitted: missing scope, plan, channel, region or role.
    NotAllowed,
    /// What the call addressed is not there (a closed or expired session, a meeting that
    /// has not ended yet, a wrong team id).
    SessionGone,
    /// The request's parameters were refused.
    BadParams,
    /// The token is malformed (quotes or a BOM around it): a refresh cannot fix it.
    MalformedToken,
    /// A rate limit that ends soon (429, TeamViewer's 403 `rate_limit_reached`).
    RateLimited,
    /// A quota that resets at a fixed time (Zoom's daily meeting-create limit).
    DailyLimit,
    /// No answer: connection, timeout, a refused redirect, a body cut off.
    Transport,
    /// Not sent: the system is held by a `Retry-After` another call saw ([`crate::holds`]).
    Held,
    /// The answer was larger than `max_response_bytes`.
    TooLarge,
    /// Anything else the vendor answered.
    Unknown,
}

/// One vendor call that failed, classified for the retry policy. Boxed, so that every
/// `Result` carrying it stays small; its fields ([`Failure`]) read and write through it.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Failure>);

/// What an [`ApiError`] says.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The source (`teamviewer`, `splashtop`, `zoom`).
    pub vendor: &'static str,
    /// What was called (`/reports/connections`, `account helpdesk: GET /users/me/recordings`).
    pub what: String,
    pub kind: ErrorKind,
    pub status: Option<u16>,
    /// The vendor's numeric code: Splashtop's `result`, Zoom's `code`.
    pub code: Option<i64>,
    /// The vendor's textual code: TeamViewer's `error` (`invalid_token`, `rate_limit_reached`).
    pub error: Option<String>,
    /// The vendor's message (or a short, scrubbed body), never a credential.
    pub message: String,
    pub retry_after: Option<Duration>,
    pub transient: bool,
    /// The access token is rejected in a way a refresh can fix: refresh (OAuth), try once more.
    pub auth_expired: bool,
    /// What the operator can do about it, when the vendor's classifier knows.
    pub hint: Option<String>,
}

impl std::ops::Deref for ApiError {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Failure {
        &mut self.0
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        ApiError(Box::new(f))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: ", self.vendor, self.what)?;
        if let Some(s) = self.status {
            write!(f, "HTTP {s}")?;
            if let Some(e) = &self.error {
                write!(f, " {e}")?;
            }
            if let Some(c) = self.code {
                write!(f, " (code {c})")?;
            }
            if !self.message.is_empty() {
                f.write_str(": ")?;
            }
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl Failure {
    /// An answer from the vendor, not yet classified further: the vendor's classifier fills
    /// in the kind, codes and retry rule.
    pub fn answered(vendor: &'static str, what: &str, status: u16, message: String) -> Failure {
        Failure {
            vendor,
            what: what.to_string(),
            kind: ErrorKind::Unknown,
            status: Some(status),
            code: None,
            error: None,
            message,
            retry_after: None,
            transient: false,
            auth_expired: false,
            hint: None,
        }
    }
}

impl ApiError {
    /// No answer (or no whole answer): `status` when the headers arrived.
    pub fn transport(vendor: &'static str, what: &str, e: &reqwest::Error, status: Option<u16>) -> ApiError {
        Failure {
            kind: ErrorKind::Transport,
            status,
            // A refused redirect is the configuration's: retrying cannot help.
            transient: !e.is_redirect(),
            ..Failure::answered(vendor, what, 0, crate::describe_transport_error(e))
        }
        .into()
    }

    /// Not sent: `origin` asked us to wait `left` more.
    pub fn held(vendor: &'static str, what: &str, left: Duration, origin: &str) -> ApiError {
        Failure {
            kind: ErrorKind::Held,
            status: None,
            retry_after: Some(left),
            transient: true,
            ..Failure::answered(vendor, what, 0, format!("not sent: {origin} asked us to wait (rate limit)"))
        }
        .into()
    }

    /// The body could not be read whole: too large (not retried) or cut off (retried).
    pub fn body(vendor: &'static str, what: &str, e: crate::BodyError, status: u16) -> ApiError {
        match e {
            crate::BodyError::Transport(e) => ApiError::transport(vendor, what, &e, Some(status)),
            too_large => {
                Failure { kind: ErrorKind::TooLarge, ..Failure::answered(vendor, what, status, too_large.to_string()) }
                    .into()
            }
        }
    }
}

/// Why a vendor call gave up: the vendor's answer, or getting a token for it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_the_vendors_codes() {
        let mut e: ApiError =
            Failure::answered("teamviewer", "/reports/connections", 403, "no Connections.Read".into()).into();
        e.error = Some("invalid_permission".into());
        e.hint = Some("the token lacks a permission".into());
        assert_eq!(
            e.to_string(),
            "teamviewer: /reports/connections: HTTP 403 invalid_permission: no Connections.Read (the token lacks a permission)"
        );
        let mut e: ApiError = Failure::answered("zoom", "GET /x", 401, "Invalid access token.".into()).into();
        e.code = Some(124);
        assert_eq!(e.to_string(), "zoom: GET /x: HTTP 401 (code 124): Invalid access token.");
        e.message.clear();
        e.hint = Some("token rejected".into());
        assert_eq!(e.to_string(), "zoom: GET /x: HTTP 401 (code 124) (token rejected)");
        let e = ApiError::held("zoom", "GET /x", Duration::from_secs(3), "https://api.zoom.us");
        assert_eq!(e.to_string(), "zoom: GET /x: not sent: https://api.zoom.us asked us to wait (rate limit)");
        assert!(e.transient && e.retry_after == Some(Duration::from_secs(3)));
        // Small enough to travel in every `Result` (clippy::result_large_err).
        assert_eq!(std::mem::size_of::<ApiError>(), std::mem::size_of::<usize>());
    }
}
