//! Export files: `vault export`, `vault import FILE` (no --format), `vault key export`,
//! `vault key import`. The file is written owner-only to a temporary name beside `--out` and
//! renamed into place only when complete.

use std::io::{Read, Write};
use std::path::Path;

use vault_store::{ExportSelection, ImportOptions, KeyState, Vault, state_name};

use crate::cli::Cli;
use crate::cli_keys::ExportKdf;
use crate::exit::Exit;
use crate::import::Format;
use crate::location::{current_passphrase, options, with_vault};
use crate::outfile::OutFile;
use crate::output::stderr_line;
use crate::{Failure, fail, passphrase};

/// Writes `bytes` to `path` whole (crate::outfile): nothing appears there unless all of it does.
pub(crate) fn write_file(cli: &Cli, path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut f = OutFile::create(path, &super::keys::guarded(cli)?)?;
    f.write_all(bytes)
        .map_err(|e| fail(Exit::Other, format!("cannot write {}: {e}", path.display())))?;
    f.finish()
}

/// The most an export file can be: 1 GiB of contents in its JSON form (a third larger) and its
/// header.
const EXPORT_MAX: u64 = (4 << 30) / 3 + 4096;

/// Reads an export file (`-`: stdin), refusing at once what cannot be one: a directory, a file
/// over [`EXPORT_MAX`], and endless input past it (`/dev/zero`), without reading more.
fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    let cannot = |e: std::io::Error| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            Exit::NotFound
        } else {
            Exit::Other
        };
        fail(code, format!("cannot read {}: {e}", path.display()))
    };
    let too_large = || {
        fail(
            Exit::Usage,
            format!("{} is larger than any export file", path.display()),
        )
    };
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(EXPORT_MAX + 1)
            .read_to_end(&mut buf)
            .map_err(cannot)?;
    } else {
        let meta = std::fs::metadata(path).map_err(cannot)?;
        if meta.is_dir() {
            return Err(fail(
                Exit::Usage,
                format!("{} is a directory, not an export file", path.display()),
            ));
        }
        if meta.is_file() && meta.len() > EXPORT_MAX {
            return Err(too_large());
        }
        std::fs::File::open(path)
            .map_err(cannot)?
            .take(EXPORT_MAX + 1)
            .read_to_end(&mut buf)
            .map_err(cannot)?;
    }
    if buf.len() as u64 > EXPORT_MAX {
        return Err(too_large());
    }
    if buf.is_empty() {
        return Err(fail(
            Exit::Usage,
            format!("{} is empty, not an export file", path.display()),
        ));
    }
    Ok(buf)
}

fn encoded(bytes: Vec<u8>, json: bool) -> Result<Vec<u8>, Failure> {
    if json {
        vault_store::export_to_json(&bytes)
            .map(String::into_bytes)
            .map_err(|e| fail(Exit::Other, e.to_string()))
    } else {
        Ok(bytes)
    }
}

/// `vault export`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn export(
    cli: &Cli,
    names: &[String],
    all: bool,
    keys: bool,
    out: &Path,
    json: bool,
    plaintext: Option<Format>,
    k: &ExportKdf,
) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    if let Some(format) = plaintext {
        return export_plaintext(cli, &pass, names, all, out, format);
    }
    let selection = ExportSelection {
        keys: if keys { None } else { Some(Vec::new()) },
        secrets: if all { None } else { Some(names.to_vec()) },
    };
    sealed_export(cli, &pass, &selection, out, json, k)
}

/// Writes the selection as an export file sealed under the export passphrase (asked twice).
fn sealed_export(
    cli: &Cli,
    pass: &vault_store::SecretBytes,
    selection: &ExportSelection,
    out: &Path,
    json: bool,
    k: &ExportKdf,
) -> Result<(), Failure> {
    let params = k.params()?;
    let export_pass = passphrase::export_passphrase(true)?;
    let exported = with_vault(cli, pass, false, |v| {
        v.export(selection, export_pass.expose_secret(), params)
    })?;
    write_file(cli, out, &encoded(exported.file, json)?)?;
    for k in &exported.skipped_keys {
        stderr_line(format!(
            "left out key {k}: its policy does not allow export"
        ));
    }
    stderr_line(format!("exported to {}", out.display()));
    Ok(())
}

fn export_plaintext(
    cli: &Cli,
    pass: &vault_store::SecretBytes,
    names: &[String],
    all: bool,
    out: &Path,
    format: Format,
) -> Result<(), Failure> {
    if out == Path::new("-") && crate::output::stdout_is_terminal() {
        stderr_line("warning: writing secret values in plaintext to the terminal");
    } else {
        stderr_line(
            "warning: writing secret values in plaintext; anyone who can read the file reads them",
        );
    }
    let lines = with_vault(cli, pass, false, |v| {
        let names: Vec<String> = if all {
            let listed = v.list(true)?;
            let deleted = listed.iter().filter(|s| s.deleted).count();
            if deleted > 0 {
                stderr_line(format!(
                    "left out {deleted} deleted secrets: the plaintext form holds latest values only (the encrypted export keeps them)"
                ));
            }
            listed
                .into_iter()
                .filter(|s| !s.deleted)
                .map(|s| s.name)
                .collect()
        } else {
            names.to_vec()
        };
        let mut text = zeroize::Zeroizing::new(String::new());
        let mut object = serde_json::Map::new();
        for n in names {
            let s = v.get(&n)?;
            let value = std::str::from_utf8(s.value.expose_secret()).map_err(|_| {
                vault_store::Error::Invalid {
                    what: "value",
                    reason: format!(
                        "{n:?} is not UTF-8 text, which the plaintext form cannot hold; use the encrypted export"
                    ),
                }
            })?;
            match format {
                Format::Jsonl => {
                    let line = serde_json::json!({ "name": n, "value": value }).to_string();
                    text.push_str(&line);
                    text.push('\n');
                }
                Format::Json => {
                    object.insert(n, serde_json::Value::String(value.to_string()));
                }
                Format::Dotenv => {
                    // What the dotenv reader takes back: the name is everything before the
                    // first `=`, trimmed, and a line starting with `#` is a comment.
                    if n.contains('=') || n.starts_with('#') || n.starts_with("export ") {
                        return Err(vault_store::Error::Invalid {
                            what: "name",
                            reason: format!(
                                "{n:?} cannot be a dotenv name (it holds `=`, or starts with `#` or `export `); use --format json"
                            ),
                        });
                    }
                    text.push_str(&n);
                    text.push_str("=\"");
                    for c in value.chars() {
                        match c {
                            '\\' => text.push_str("\\\\"),
                            '"' => text.push_str("\\\""),
                            '\n' => text.push_str("\\n"),
                            '\r' => text.push_str("\\r"),
                            '\t' => text.push_str("\\t"),
                            c => text.push(c),
                        }
                    }
                    text.push_str("\"\n");
                }
            }
        }
        if format == Format::Json {
            let doc = serde_json::Value::Object(object);
            let json =
                zeroize::Zeroizing::new(serde_json::to_string_pretty(&doc).unwrap_or_default());
            text.push_str(&json);
            text.push('\n');
            drop(doc);
        }
        Ok(text)
    })?;
    write_file(cli, out, lines.as_bytes())?;
    stderr_line(format!("wrote {} in plaintext", out.display()));
    Ok(())
}

/// `vault import FILE` of a vault export.
pub(crate) fn import(cli: &Cli, file: &Path, replace: bool, dry_run: bool) -> Result<(), Failure> {
    let bytes = read_file(file)?;
    let pass = current_passphrase(cli)?;
    let export_pass = passphrase::export_passphrase(false)?;
    let opts = options(cli, false)?;
    if dry_run {
        let c = Vault::read_export(&bytes, export_pass.expose_secret(), &opts.kdf_limit)?;
        let (keys, secrets) = with_vault(cli, &pass, false, |v| {
            let keys = v.key_names()?;
            let secrets: Vec<String> = v.list(true)?.into_iter().map(|s| s.name).collect();
            Ok((keys, secrets))
        })?;
        let mut conflicts = 0;
        let mut say = |what: &str, name: &str, exists: bool| {
            let verb = match (exists, replace) {
                (false, _) => "would import",
                (true, true) => "would replace",
                (true, false) => {
                    conflicts += 1;
                    "conflict (exists; --replace replaces it):"
                }
            };
            stderr_line(format!("{verb} {what} {name}"));
        };
        for k in &c.keys {
            say("key", &k.key.name, keys.contains(&k.key.name));
        }
        for s in &c.secrets {
            say("secret", &s.name, secrets.contains(&s.name));
        }
        return if conflicts > 0 {
            Err(fail(
                Exit::Conflict,
                format!(
                    "{conflicts} names exist already: nothing would be imported without --replace"
                ),
            ))
        } else {
            Ok(())
        };
    }
    let options = ImportOptions {
        rename: None,
        replace,
        kdf_limit: opts.kdf_limit,
    };
    let report = with_vault(cli, &pass, false, |v| {
        v.import_export(&bytes, export_pass.expose_secret(), &options)
    })?;
    stderr_line(format!(
        "imported {} secrets and {} keys",
        report.secrets.len(),
        report.keys.len()
    ));
    Ok(())
}

/// `vault key export`.
pub(crate) fn key_export(
    cli: &Cli,
    names: &[String],
    all: bool,
    out: &Path,
    json: bool,
    public: bool,
    k: &ExportKdf,
) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    if public {
        let doc = with_vault(cli, &pass, false, |v| {
            let infos = if all {
                v.keys()?
                    .into_iter()
                    .filter(|k| k.algorithm == "ed25519")
                    .collect()
            } else {
                names
                    .iter()
                    .map(|n| v.key(n))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let mut keys = Vec::new();
            for k in infos {
                let mut versions = Vec::new();
                for ver in &k.versions {
                    if ver.state == KeyState::Destroyed {
                        continue;
                    }
                    let public = v.public_key(&k.name, Some(ver.version))?;
                    versions.push(serde_json::json!({
                        "version": ver.version,
                        "state": state_name(ver.state),
                        "public_key": public.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    }));
                }
                keys.push(serde_json::json!({
                    "name": k.name,
                    "key_id": k.key_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    "algorithm": k.algorithm,
                    "primary": k.primary,
                    "versions": versions,
                }));
            }
            Ok(serde_json::json!({ "format": "vault-public-keys", "version": 1, "keys": keys }))
        })?;
        write_file(cli, out, format!("{doc:#}\n").as_bytes())?;
        stderr_line(format!("wrote the public keys to {}", out.display()));
        return Ok(());
    }
    let selection = ExportSelection {
        keys: if all { None } else { Some(names.to_vec()) },
        secrets: Some(Vec::new()),
    };
    sealed_export(cli, &pass, &selection, out, json, k)
}

/// `vault key import`.
pub(crate) fn key_import(
    cli: &Cli,
    file: &Path,
    rename: &Option<String>,
    replace: bool,
) -> Result<(), Failure> {
    let bytes = read_file(file)?;
    let pass = current_passphrase(cli)?;
    let export_pass = passphrase::export_passphrase(false)?;
    let opts = options(cli, false)?;
    let c = Vault::read_export(&bytes, export_pass.expose_secret(), &opts.kdf_limit)?;
    if !c.secrets.is_empty() {
        return Err(fail(
            Exit::Usage,
            "the file holds secrets too: import it with `vault import FILE`",
        ));
    }
    let options = ImportOptions {
        rename: rename.clone(),
        replace,
        kdf_limit: opts.kdf_limit,
    };
    let report = with_vault(cli, &pass, false, |v| {
        v.import_export(&bytes, export_pass.expose_secret(), &options)
    })?;
    stderr_line(format!("imported keys: {}", report.keys.join(", ")));
    Ok(())
}
