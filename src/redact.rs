//! The redactor (crates/redact), and what only the binary's configuration knows: which of
//! its values are secrets and which HTTP Basic pairs the configured sinks and vendors send.

pub use ticketsync_redact::*;

/// Register every secret of a loaded configuration, and the HTTP Basic pairs its sinks and
/// vendors send (Zendesk `email/token:TOKEN`, Freshservice `KEY:X`, JSM Cloud
/// `email:TOKEN`, Zoom's token endpoint `client_id:client_secret`).
pub fn register_config(cfg: &crate::config::Config, text: &str) {
    use secrecy::ExposeSecret;
    let secrets = secrets_in_config(text, crate::config::ENV_PREFIX, std::env::vars());
    let short = secrets.iter().filter(|s| !s.is_empty() && s.chars().count() < MIN_SECRET_LEN).count();
    if short > 0 {
        tracing::warn!(
            secrets = short,
            min_len = MIN_SECRET_LEN,
            "configured secret(s) too short to be redacted from logs and error text"
        );
    }
    register_all(secrets.iter().map(String::as_str));
    let mut pairs: Vec<(String, String)> = Vec::new();
    pairs.extend(cfg.sinks.basic_pairs());
    if let Some(z) = &cfg.sources.zoom {
        for (i, a) in z.accounts.iter().enumerate() {
            if let Ok(Some(s)) = a.client_secret(i) {
                pairs.push((a.client_id.clone(), s.expose_secret().to_string()));
            }
        }
    }
    register_pairs(&pairs);
}
