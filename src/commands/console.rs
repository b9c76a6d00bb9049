use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

/// `ticketsync console hash-password`: the password from standard input (a terminal does
/// not echo it), its argon2id PHC string on standard output.
pub async fn hash_password() -> Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        let p = dialoguer::Password::new()
            .with_prompt("Password")
            .with_confirmation("Again", "the two differ")
            .interact()?;
        p
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        bail!("empty password");
    }
    let hash = ticketsync::console::hash_password(&password).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{hash}")?;
    Ok(ExitCode::SUCCESS)
}
