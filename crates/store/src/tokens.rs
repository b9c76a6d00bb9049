//! OAuth tokens at rest, encrypted with a key derived from the OAuth client secret
//! (which lives in a credential file, not in the database): a copy of the database
//! alone does not give anyone a working token.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::audit::{self, Event};
use super::{on_pool, on_tx, Result, StoreError};

pub struct TokenKey(Key);

impl TokenKey {
    pub fn derive(provider: &str, client_secret: &SecretString) -> TokenKey {
        let mut h = Sha256::new();
        h.update(b"ticketsync-oauth-token-key-v1\0");
        h.update(provider.as_bytes());
        h.update(b"\0");
        h.update(client_secret.expose_secret().as_bytes());
        TokenKey(*Key::from_slice(&h.finalize()))
    }

    fn seal(&self, plain: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = ChaCha20Poly1305::new(&self.0)
            .encrypt(Nonce::from_slice(&nonce_bytes), plain.as_bytes())
            .expect("chacha20poly1305 encryption cannot fail for in-memory buffers");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        format!("v1:{}", base64::engine::general_purpose::STANDARD.encode(out))
    }

    fn open(&self, sealed: &str) -> Result<SecretString> {
        self.decrypt(sealed).map_err(|_| {
            StoreError::Invalid(
                "stored OAuth token cannot be decrypted (client secret changed?): run `ticketsync auth` again".into(),
            )
        })
    }

    /// Open a stored token. Any text is accepted and never panics (fuzz target
    /// `token_decrypt`): a wrong prefix, bad base64, a short or forged ciphertext, a key
    /// derived from another client secret and non-UTF-8 plaintext are all [`Undecryptable`].
    pub fn decrypt(&self, sealed: &str) -> std::result::Result<SecretString, Undecryptable> {
        let b64 = sealed.strip_prefix("v1:").ok_or(Undecryptable)?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| Undecryptable)?;
        self.decrypt_raw(&raw)
    }

    /// The AEAD step of [`Self::decrypt`]: `nonce (12 bytes) || ciphertext || tag`, as any bytes.
    pub fn decrypt_raw(&self, raw: &[u8]) -> std::result::Result<SecretString, Undecryptable> {
        if raw.len() < 12 {
            return Err(Undecryptable);
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = ChaCha20Poly1305::new(&self.0).decrypt(Nonce::from_slice(nonce), ct).map_err(|_| Undecryptable)?;
        let plain = String::from_utf8(plain).map_err(|_| Undecryptable)?;
        crate::redact::register(&plain);
        Ok(SecretString::from(plain))
    }

    /// Seal a token as it is stored (`v1:` + base64 of nonce and ciphertext).
    pub fn encrypt(&self, plain: &str) -> String {
        self.seal(plain)
    }

    /// The PKCE `code_verifier` (RFC 7636 §4.1) of an authorization request, derived from the
    /// client secret and the request's `state`: 43 characters of base64url. Derived rather than
    /// stored, so that `auth --code URL` in a second process finds it from the state in the
    /// redirect, without a schema change, and nobody without the client secret can compute it.
    pub fn pkce_verifier(&self, state: &str) -> String {
        use hmac::Mac;
        let mut mac =
            <hmac::Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice()).expect("HMAC takes any key length");
        mac.update(b"ticketsync-pkce-verifier-v1\0");
        mac.update(state.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// The S256 `code_challenge` of a PKCE verifier: base64url(SHA-256(verifier)), no padding.
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A stored token that the configured client secret does not open (the secret was rotated,
/// or the row was damaged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored OAuth token cannot be decrypted with the configured client secret")]
pub struct Undecryptable;

pub struct Tokens {
    pub access: Option<SecretString>,
    pub refresh: Option<SecretString>,
    pub access_expires_at: Option<String>,
    pub refresh_expires_at: Option<String>,
    pub generation: i64,
    /// When this row was written (the access token's issue time, for the refresh point).
    pub updated_at: Option<String>,
}

/// A token row as [`load_checked`] found it.
pub enum Loaded {
    Missing,
    Tokens(Tokens),
    /// The row exists but the configured client secret does not open it.
    Undecryptable {
        generation: i64,
    },
}

/// Like [`load`], but a row the key does not open is reported, not an error, so that the
/// caller can discard it (see `OAuthClient`).
pub async fn load_checked(store: &super::Store, provider: &str, key: &TokenKey) -> Result<Loaded> {
    type Row = (Option<String>, Option<String>, Option<String>, Option<String>, i64, String);
    let row: Option<Row> = on_pool!(store, |ex, d| {
        sqlx::query_as(&d.sql(
        "SELECT access_token_enc, refresh_token_enc, access_expires_at, refresh_expires_at, generation, updated_at FROM oauth_tokens WHERE provider = ?",
    ))
    .bind(provider)
    .fetch_optional(ex)
    .await?
    });
    let Some((a, r, exp, refresh_exp, generation, updated_at)) = row else { return Ok(Loaded::Missing) };
    let open = |v: Option<String>| v.map(|v| key.decrypt(&v)).transpose();
    match (open(a), open(r)) {
        (Ok(access), Ok(refresh)) => Ok(Loaded::Tokens(Tokens {
            access,
            refresh,
            access_expires_at: exp,
            refresh_expires_at: refresh_exp,
            generation,
            updated_at: Some(updated_at),
        })),
        _ => Ok(Loaded::Undecryptable { generation }),
    }
}

/// Delete a provider's tokens that no longer decrypt (only the row of `generation`, so a
/// token another process saved meanwhile stays), with an audit event saying why.
pub async fn discard(store: &super::Store, provider: &str, generation: i64, why: &str) -> Result<bool> {
    let mut tx = store.begin().await?;
    let n = on_tx!(tx, |ex, d| sqlx::query(&d.sql("DELETE FROM oauth_tokens WHERE provider = ? AND generation = ?"))
        .bind(provider)
        .bind(generation)
        .execute(ex)
        .await?
        .rows_affected());
    if n == 1 {
        audit::append(
            &mut tx,
            Event {
                kind: "token_discarded",
                vendor: Some(provider),
                detail: Some(json!({"reason": why, "generation": generation})),
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

pub async fn load(store: &super::Store, provider: &str, key: &TokenKey) -> Result<Option<Tokens>> {
    type Row = (Option<String>, Option<String>, Option<String>, Option<String>, i64);
    let row: Option<Row> = on_pool!(store, |ex, d| {
        sqlx::query_as(&d.sql(
        "SELECT access_token_enc, refresh_token_enc, access_expires_at, refresh_expires_at, generation FROM oauth_tokens WHERE provider = ?",
    ))
    .bind(provider)
    .fetch_optional(ex)
    .await?
    });
    let Some((a, r, exp, refresh_exp, generation)) = row else { return Ok(None) };
    Ok(Some(Tokens {
        access: a.map(|a| key.open(&a)).transpose()?,
        refresh: r.map(|r| key.open(&r)).transpose()?,
        access_expires_at: exp,
        refresh_expires_at: refresh_exp,
        generation,
        updated_at: None,
    }))
}

/// A token response sealed for storage: what the token journal holds and what
/// [`save_sealed`] writes. Nothing in it is in clear.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    pub provider: String,
    pub access_token_enc: String,
    pub refresh_token_enc: Option<String>,
    pub access_expires_at: String,
    pub refresh_expires_at: Option<String>,
    pub reason: String,
    /// The process that staged this journal entry (pid and its start time in clock ticks,
    /// from /proc), so that a reader can tell a save still under way in a live process (it
    /// will commit it) from one a crash interrupted (to replay). Absent in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<(u32, u64)>,
}

/// This process as a journal writer: its pid and start time (field 22 of /proc/self/stat).
pub fn this_process() -> Option<(u32, u64)> {
    process_start(std::process::id()).map(|t| (std::process::id(), t))
}

fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that staged a journal entry is still running (same pid, same start
/// time: a pid reused after a crash or reboot is another process).
pub fn writer_alive(writer: Option<(u32, u64)>) -> bool {
    writer.is_some_and(|(pid, start)| process_start(pid) == Some(start))
}

impl Sealed {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        provider: &str,
        key: &TokenKey,
        access: &SecretString,
        refresh: Option<&SecretString>,
        access_expires_at: &str,
        refresh_expires_at: Option<&str>,
        reason: &str,
    ) -> Sealed {
        // Live tokens join the redactor before anything can echo them back.
        crate::redact::register_all([Some(access), refresh].into_iter().flatten().map(|s| s.expose_secret()));
        Sealed {
            provider: provider.to_string(),
            access_token_enc: key.seal(access.expose_secret()),
            refresh_token_enc: refresh.map(|r| key.seal(r.expose_secret())),
            access_expires_at: access_expires_at.to_string(),
            refresh_expires_at: refresh_expires_at.map(str::to_string),
            reason: reason.to_string(),
            writer: this_process(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Commit a token response. Called before the new access token is used: a rotated
/// refresh token that was never committed would lock the account out after a crash.
pub async fn save(
    store: &super::Store,
    provider: &str,
    key: &TokenKey,
    access: &SecretString,
    refresh: Option<&SecretString>,
    access_expires_at: &str,
    refresh_expires_at: Option<&str>,
    reason: &str,
) -> Result<i64> {
    let sealed = Sealed::new(provider, key, access, refresh, access_expires_at, refresh_expires_at, reason);
    Ok(save_sealed(store, &sealed, None).await?.expect("an unconditional save always writes"))
}

/// Write sealed tokens. With `expect_generation`, only if the row is still at that generation
/// (`Some(0)`: only if there is no row): a replayed journal never overwrites a newer token.
/// `None` when the condition did not hold.
pub async fn save_sealed(store: &super::Store, t: &Sealed, expect_generation: Option<i64>) -> Result<Option<i64>> {
    let mut tx = store.begin().await?;
    if let Some(expected) = expect_generation {
        let current: Option<i64> =
            on_tx!(tx, |ex, d| sqlx::query_scalar(&d.sql("SELECT generation FROM oauth_tokens WHERE provider = ?"))
                .bind(&t.provider)
                .fetch_optional(ex)
                .await?);
        if current.unwrap_or(0) != expected {
            return Ok(None);
        }
    }
    let now = super::now();
    let generation: i64 = on_tx!(tx, |ex, d| {
        sqlx::query_scalar(&d.sql(
        "INSERT INTO oauth_tokens (provider, access_token_enc, refresh_token_enc, access_expires_at, refresh_expires_at, updated_at, generation)
         VALUES (?, ?, ?, ?, ?, ?, 1)
         ON CONFLICT(provider) DO UPDATE SET access_token_enc = excluded.access_token_enc,
           refresh_token_enc = COALESCE(excluded.refresh_token_enc, oauth_tokens.refresh_token_enc),
           refresh_expires_at = CASE WHEN excluded.refresh_token_enc IS NOT NULL THEN excluded.refresh_expires_at
                                     ELSE oauth_tokens.refresh_expires_at END,
           access_expires_at = excluded.access_expires_at, updated_at = excluded.updated_at,
           generation = oauth_tokens.generation + 1
         RETURNING generation",
    ))
    .bind(&t.provider)
    .bind(&t.access_token_enc)
    .bind(&t.refresh_token_enc)
    .bind(&t.access_expires_at)
    .bind(&t.refresh_expires_at)
    .bind(&now)
    .fetch_one(ex)
    .await?
    });
    audit::append(
        &mut tx,
        Event {
            kind: "token_saved",
            vendor: Some(&t.provider),
            detail: Some(
                json!({"reason": t.reason, "generation": generation, "access_expires_at": t.access_expires_at}),
            ),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(generation))
}

/// The refresh token of a provider as stored (sealed), to compare with a journal entry.
pub async fn stored_refresh_enc(store: &super::Store, provider: &str) -> Result<Option<(i64, Option<String>)>> {
    Ok(on_pool!(store, |ex, d| sqlx::query_as(
        &d.sql("SELECT generation, refresh_token_enc FROM oauth_tokens WHERE provider = ?")
    )
    .bind(provider)
    .fetch_optional(ex)
    .await?))
}

/// The token journal: a token response that carries a refresh token is written here, sealed,
/// and fsynced, before it is committed to the database. The database commit may wait behind
/// a page transaction (one writer per WAL database); this file never does. After a crash
/// between the two, the next load replays it ([`journal_read`]), so a rotated refresh token the
/// vendor has already answered with is never lost once this write returned. One small file
/// per provider beside the database (`<db>.oauth-<hash>`), mode 0600, removed after the
/// commit: the database stays the one place tokens live, and backups of it stay complete.
pub fn journal_path(db_path: &str, provider: &str) -> std::path::PathBuf {
    let digest = Sha256::digest(provider.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    std::path::PathBuf::from(format!("{db_path}.oauth-{hex}"))
}

/// Write and fsync the journal entry ([`journal_stage`], then [`journal_sync`]).
pub fn journal_write(db_path: &str, t: &Sealed) -> std::io::Result<()> {
    journal_sync(&journal_stage(db_path, t)?)
}

/// Put the entry in place: written to `.tmp` and renamed, so that it is whole or absent.
/// From here on a killed process loses nothing (the page cache outlives it); surviving a power
/// loss takes [`journal_sync`] too. Microseconds, so it runs on the caller's thread.
pub fn journal_stage(db_path: &str, t: &Sealed) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = journal_path(db_path, &t.provider);
    // Beside the entry, per provider (`with_extension` would give every provider one name).
    let tmp = std::path::PathBuf::from(format!("{}.tmp", path.display()));
    let body = serde_json::to_vec(t).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&body)?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// fsync the entry and its directory (the new name), so that it survives a power loss. An
/// entry cut short by a power loss before this is unreadable and ignored, which loses no more
/// than the database commit that had not happened either.
pub fn journal_sync(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The journal entry of a provider, if a save was interrupted (or is under way elsewhere).
/// An unreadable file is `None`: it can only be one whose rename never happened.
pub fn journal_read(db_path: &str, provider: &str) -> Option<Sealed> {
    let body = std::fs::read(journal_path(db_path, provider)).ok()?;
    parse_journal(&body).filter(|t| t.provider == provider)
}

/// A journal entry from its file's bytes; `None` for anything else (fuzz target `token_decrypt`).
pub fn parse_journal(body: &[u8]) -> Option<Sealed> {
    serde_json::from_slice::<Sealed>(body).ok()
}

pub fn journal_remove(db_path: &str, provider: &str) {
    let _ = std::fs::remove_file(journal_path(db_path, provider));
}

pub async fn save_state(store: &super::Store, provider: &str, state: &str) -> Result<()> {
    on_pool!(store, |ex, d| sqlx::query(
        &d.sql("INSERT INTO oauth_states (state, provider, created_at) VALUES (?, ?, ?)")
    )
    .bind(state)
    .bind(provider)
    .bind(super::now())
    .execute(ex)
    .await
    .map(|_| ())?);
    Ok(())
}

/// True when the state was issued for this provider; it is consumed either way.
pub async fn take_state(store: &super::Store, provider: &str, state: &str) -> Result<bool> {
    let n = on_pool!(store, |ex, d| sqlx::query(&d.sql("DELETE FROM oauth_states WHERE state = ? AND provider = ?"))
        .bind(state)
        .bind(provider)
        .execute(ex)
        .await?
        .rows_affected());
    Ok(n == 1)
}

/// How long an issued `state` is accepted: longer than any vendor's code lifetime
/// (TeamViewer 10 min, Zoom 5 min), short enough that an old URL found in a shell history
/// or a browser's address bar is refused.
pub const STATE_VALIDITY: chrono::Duration = chrono::Duration::minutes(30);

/// [`take_state`] that also refuses a state older than [`STATE_VALIDITY`]; every expired
/// state is purged on the way.
pub async fn take_fresh_state(store: &super::Store, provider: &str, state: &str) -> Result<bool> {
    let cutoff = crate::session::ts(chrono::Utc::now() - STATE_VALIDITY);
    on_pool!(store, |ex, d| sqlx::query(&d.sql("DELETE FROM oauth_states WHERE created_at < ?"))
        .bind(&cutoff)
        .execute(ex)
        .await
        .map(|_| ())?);
    take_state(store, provider, state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B: the S256 challenge of its example verifier.
    #[test]
    fn pkce_challenge_is_rfc_7636_s256() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let k = TokenKey::derive("zoom:a", &SecretString::from("s".to_string()));
        let v = k.pkce_verifier("state-1");
        assert_eq!(v.len(), 43);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(v, k.pkce_verifier("state-2"));
        let other = TokenKey::derive("zoom:a", &SecretString::from("t".to_string()));
        assert_ne!(v, other.pkce_verifier("state-1"), "only the client secret's holder computes it");
    }

    /// What the fuzz target `token_decrypt` checks, on a fixed sample: tampered, truncated,
    /// foreign and arbitrary input is `Undecryptable`, never a panic.
    #[test]
    fn decrypt_refuses_tampered_and_arbitrary_input() {
        let k = TokenKey::derive("teamviewer", &SecretString::from("cs-1".to_string()));
        let sealed = k.encrypt("54213-2YotnFZFEjr1zCsicMWp");
        let raw = base64::engine::general_purpose::STANDARD.decode(&sealed[3..]).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x01;
            assert!(k.decrypt_raw(&t).is_err(), "bit flip at {i}");
            assert!(k.decrypt_raw(&raw[..i]).is_err(), "truncated to {i}");
        }
        for s in [
            "",
            "v1:",
            "v1:====",
            "v2:AAAA",
            "v1:\u{0}\u{ffff}",
            &sealed[..sealed.len() - 2],
            "v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(k.decrypt(s).is_err(), "{s:?}");
        }
        assert!(parse_journal(b"{\"provider\":1}").is_none());
    }

    #[test]
    fn seal_open_round_trip_and_wrong_key_fails() {
        let k = TokenKey::derive("teamviewer", &SecretString::from("cs-1".to_string()));
        let sealed = k.seal("54213-2YotnFZFEjr1zCsicMWp");
        assert!(!sealed.contains("2YotnFZFEjr1zCsicMWp"));
        assert_eq!(k.open(&sealed).unwrap().expose_secret(), "54213-2YotnFZFEjr1zCsicMWp");
        let other = TokenKey::derive("teamviewer", &SecretString::from("cs-2".to_string()));
        assert!(other.open(&sealed).is_err());
    }
}
