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
use super::{Result, StoreError};

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
        let bad = || {
            StoreError::Invalid(
                "stored OAuth token cannot be decrypted (client secret changed?): run `ticketsync auth` again".into(),
            )
        };
        let b64 = sealed.strip_prefix("v1:").ok_or_else(bad)?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?;
        if raw.len() < 12 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = ChaCha20Poly1305::new(&self.0).decrypt(Nonce::from_slice(nonce), ct).map_err(|_| bad())?;
        let plain = String::from_utf8(plain).map_err(|_| bad())?;
        crate::redact::register(&plain);
        Ok(SecretString::from(plain))
    }
}

pub struct Tokens {
    pub access: Option<SecretString>,
    pub refresh: Option<SecretString>,
    pub access_expires_at: Option<String>,
    pub refresh_expires_at: Option<String>,
    pub generation: i64,
}

pub async fn load(pool: &sqlx::SqlitePool, provider: &str, key: &TokenKey) -> Result<Option<Tokens>> {
    type Row = (Option<String>, Option<String>, Option<String>, Option<String>, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT access_token_enc, refresh_token_enc, access_expires_at, refresh_expires_at, generation FROM oauth_tokens WHERE provider = ?",
    )
    .bind(provider)
    .fetch_optional(pool)
    .await?;
    let Some((a, r, exp, refresh_exp, generation)) = row else { return Ok(None) };
    Ok(Some(Tokens {
        access: a.map(|a| key.open(&a)).transpose()?,
        refresh: r.map(|r| key.open(&r)).transpose()?,
        access_expires_at: exp,
        refresh_expires_at: refresh_exp,
        generation,
    }))
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
    let mut tx = store.begin().await?;
    let now = super::now();
    crate::redact::register_all([Some(access), refresh].into_iter().flatten().map(|s| s.expose_secret()));
    let a = key.seal(access.expose_secret());
    let r = refresh.map(|r| key.seal(r.expose_secret()));
    let generation: i64 = sqlx::query_scalar(
        "INSERT INTO oauth_tokens (provider, access_token_enc, refresh_token_enc, access_expires_at, refresh_expires_at, updated_at, generation)
         VALUES (?, ?, ?, ?, ?, ?, 1)
         ON CONFLICT(provider) DO UPDATE SET access_token_enc = excluded.access_token_enc,
           refresh_token_enc = COALESCE(excluded.refresh_token_enc, oauth_tokens.refresh_token_enc),
           refresh_expires_at = CASE WHEN excluded.refresh_token_enc IS NOT NULL THEN excluded.refresh_expires_at
                                     ELSE oauth_tokens.refresh_expires_at END,
           access_expires_at = excluded.access_expires_at, updated_at = excluded.updated_at,
           generation = oauth_tokens.generation + 1
         RETURNING generation",
    )
    .bind(provider)
    .bind(a)
    .bind(r)
    .bind(access_expires_at)
    .bind(refresh_expires_at)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        Event {
            kind: "token_saved",
            vendor: Some(provider),
            detail: Some(json!({"reason": reason, "generation": generation, "access_expires_at": access_expires_at})),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(generation)
}

pub async fn save_state(store: &super::Store, provider: &str, state: &str) -> Result<()> {
    sqlx::query("INSERT INTO oauth_states (state, provider, created_at) VALUES (?, ?, ?)")
        .bind(state)
        .bind(provider)
        .bind(super::now())
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// True when the state was issued for this provider; it is consumed either way.
pub async fn take_state(store: &super::Store, provider: &str, state: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM oauth_states WHERE state = ? AND provider = ?")
        .bind(state)
        .bind(provider)
        .execute(&store.pool)
        .await?;
    Ok(n.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
