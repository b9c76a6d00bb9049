use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use ticketsync::cli::{Cli, Command};

/// `ticketsync init`: a configuration, its credentials and the unit drop-in, then check and doctor.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Init {
        sources,
        sinks,
        sets,
        secrets,
        credentials_dir,
        unit_dropin,
        no_unit_dropin,
        force,
        no_input,
        no_doctor,
    } = &cli.command
    else {
        unreachable!("dispatched on Command::Init")
    };
    let default_dropin = std::path::Path::new("/etc/systemd/system");
    let unit_dropin = match (unit_dropin, no_unit_dropin) {
        (_, true) => None,
        (Some(p), _) => Some(p.clone()),
        (None, false) if default_dropin.is_dir() => Some(default_dropin.join("ticketsync.service.d/credentials.conf")),
        (None, false) => None,
    };
    let opts = ticketsync::init::InitOptions {
        config: cli.config.clone(),
        sources: sources.clone(),
        sinks: sinks.clone(),
        sets: sets.clone(),
        secrets: secrets.clone(),
        credentials_dir: credentials_dir.clone(),
        unit_dropin,
        force: *force,
        interactive: !no_input && std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
        encrypt: None,
    };
    let report = ticketsync::init::run(&opts, &mut ticketsync::init::Terminal)?;
    println!("wrote {}", report.config.display());
    for c in &report.credentials {
        println!(
            "wrote {} (mode 0600{})",
            c.display(),
            if report.encrypted { ", systemd-creds encrypted" } else { "" }
        );
    }
    if let Some(d) = &report.unit_dropin {
        println!("wrote {} (then: systemctl daemon-reload)", d.display());
    }
    // check and doctor as the operator would run them, on what was just written.
    let exe = std::env::current_exe().context("the ticketsync binary")?;
    let step = |cmd: &str| -> Result<bool> {
        println!("\n$ ticketsync {cmd} --config {}", report.config.display());
        let mut c = std::process::Command::new(&exe);
        // Encrypted credentials too: the command decrypts them as systemd will for the unit.
        c.arg(cmd).arg("--config").arg(&report.config).env("CREDENTIALS_DIRECTORY", credentials_dir);
        Ok(c.status().with_context(|| format!("running ticketsync {cmd}"))?.success())
    };
    let checked = step("check")?;
    let doctored = *no_doctor || !checked || step("doctor")?;
    println!("\nnext:");
    for n in &report.next {
        println!("  {n}");
    }
    if report.unit_dropin.is_some() {
        println!("  systemctl daemon-reload");
    }
    println!("  systemctl enable --now ticketsync");
    println!("  curl -s http://127.0.0.1:9187/readyz");
    if !checked {
        bail!("the written configuration does not pass check (above); fix it and run `ticketsync check`");
    }
    if !doctored {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
