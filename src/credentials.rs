//! The credentials directory as a command run by hand sees it.
//!
//! Where systemd runs, `ticketsync init` writes each secret encrypted with `systemd-creds`
//! (`<name>.cred`, loaded by the unit with `LoadCredentialEncrypted=`): systemd hands the
//! service the plain values, but `check`, `doctor` and the administrative commands, run as
//! root with `CREDENTIALS_DIRECTORY=/etc/ticketsync/credentials`, found only ciphertext under
//! other names and reported every secret missing (seen in the first-hour walkthrough on a
//! booted Debian 12). So a directory holding `.cred` files is decrypted, as systemd would, into
//! a private directory that lives as long as the command, and `CREDENTIALS_DIRECTORY` points
//! there.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// systemd-creds' own message: it never contains the plaintext.
    #[error("systemd-creds decrypt {name}: {reason} (run as root, on the host that encrypted it)")]
    Decrypt { name: String, reason: String },
}

/// A private copy of a credentials directory with its `.cred` files decrypted; removed on drop.
#[derive(Debug)]
pub struct Decrypted {
    dir: PathBuf,
    names: Vec<String>,
}

impl Decrypted {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The credentials that were encrypted.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for Decrypted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Point `CREDENTIALS_DIRECTORY` at `dir`, or, when `dir` holds `systemd-creds` encrypted
/// files, at a decrypted private copy (returned: keep it while the credentials are read).
pub fn use_dir(dir: &Path) -> Result<Option<Decrypted>, CredentialsError> {
    let decrypted = decrypt_dir(dir)?;
    std::env::set_var("CREDENTIALS_DIRECTORY", decrypted.as_ref().map_or(dir, |d| d.dir()));
    Ok(decrypted)
}

/// The `.cred` files of `dir` decrypted (and its plain files copied) into a new directory of
/// mode 0700 (under /run, which is not on disk, where it can), each file 0600; None when
/// `dir` holds no `.cred` file (the service's own directory never does: systemd names the
/// decrypted files after the credential).
pub fn decrypt_dir(dir: &Path) -> Result<Option<Decrypted>, CredentialsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CredentialsError::Io { path, source }
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(None) };
    let files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    if !files.iter().any(|p| p.extension().is_some_and(|e| e == "cred")) {
        return Ok(None);
    }
    // /run is not on disk; where it is not ours to write, the temporary directory.
    let name = format!("ticketsync-credentials-{}", uuid::Uuid::new_v4().simple());
    let out = match create_private_dir(&Path::new("/run").join(&name)) {
        Ok(()) => Path::new("/run").join(&name),
        Err(_) => {
            let out = std::env::temp_dir().join(&name);
            create_private_dir(&out).map_err(io(&out))?;
            out
        }
    };
    let mut decrypted = Decrypted { dir: out, names: Vec::new() };
    for file in files {
        let Some(file_name) = file.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        match file_name.strip_suffix(".cred") {
            Some(name) => {
                let value = systemd_creds_decrypt(name, &file)?;
                let target = decrypted.dir.join(name);
                write_private(&target, value.expose_secret().as_bytes()).map_err(io(&target))?;
                decrypted.names.push(name.to_string());
            }
            None => {
                let bytes = std::fs::read(&file).map_err(io(&file))?;
                let target = decrypted.dir.join(&file_name);
                write_private(&target, &bytes).map_err(io(&target))?;
            }
        }
    }
    decrypted.names.sort();
    Ok(Some(decrypted))
}

fn systemd_creds_decrypt(name: &str, file: &Path) -> Result<SecretString, CredentialsError> {
    let err = |reason: String| CredentialsError::Decrypt { name: name.to_string(), reason };
    let out = std::process::Command::new("systemd-creds")
        .arg("decrypt")
        .arg(format!("--name={name}"))
        .arg(file)
        .arg("-")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    String::from_utf8(out.stdout).map(SecretString::from).map_err(|_| err("not UTF-8".into()))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}
