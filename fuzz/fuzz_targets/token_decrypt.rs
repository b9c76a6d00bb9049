//! Stored OAuth tokens and token-journal entries on arbitrary bytes: a damaged row, a
//! database edited by hand, a token sealed under another client secret. Decryption must
//! answer `Undecryptable` (the client then discards the row), never panic, and never accept
//! a ciphertext it did not seal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret, SecretString};
use ticketsync::store::tokens::{parse_journal, TokenKey};

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::derive("teamviewer", &SecretString::from("fuzz-client-secret".to_string()));
    // As stored text (`v1:` + base64 of nonce || ciphertext || tag).
    let text = String::from_utf8_lossy(data);
    if let Ok(plain) = key.decrypt(&text) {
        // Only a sealed token opens; sealing it again opens to the same text.
        let again = key.encrypt(plain.expose_secret());
        assert_eq!(key.decrypt(&again).map(|p| p.expose_secret().to_string()).ok().as_deref(), Some(plain.expose_secret()));
    }
    // The AEAD step on the raw bytes: a forgery authenticates with probability 2^-128.
    assert!(key.decrypt_raw(data).is_err(), "arbitrary bytes authenticated as a sealed token");
    // A journal entry read back from its file.
    if let Some(entry) = parse_journal(data) {
        let _ = key.decrypt(&entry.access_token_enc);
        if let Some(r) = entry.refresh_token_enc.as_deref() {
            let _ = key.decrypt(r);
        }
    }
});
