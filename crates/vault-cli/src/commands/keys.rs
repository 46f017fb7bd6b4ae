//! `vault key …`: managed keys from the command line, a thin layer over vault-store's key API.
//! Input comes from stdin or `--in`; output goes to stdout or to `--out`, which is written to an
//! owner-only temporary file beside it and renamed into place only when the command succeeds.

use std::cell::RefCell;
use std::io::{Read, Write};

use vault_store::token::{self, TextReader, TextWriter};
use vault_store::{KeyInfo, KeySpec, RotateOptions, SecretBytes, UseOptions, Vault, state_name};

use crate::cli::Cli;
use crate::cli_keys::{Ad, Io, KeyCommand};
use crate::exit::Exit;
use crate::location::{current_passphrase, with_vault};
use crate::outfile::OutFile;
use crate::output::{Stdout, Table, stderr_line, stdout_failure};
use crate::rewind::Rewind;
use crate::text::format_time;
use crate::{Failure, fail};

/// Input up to this size is encrypted as one token; anything longer as a stream.
const ONE_SHOT_MAX: usize = 1 << 20;
/// The most of its input a streaming command keeps to start over with (a one-shot token in text
/// form is at most about 1.4 MiB).
const REWIND_MAX: usize = 2 << 20;

fn consumed() -> vault_store::Error {
    vault_store::Error::Invalid {
        what: "input",
        reason: "the operation had to start over (another process rotated the master key) after reading more of the input than it keeps; run it again".into(),
    }
}

/// The most associated data may be: it is a label (an id, a context), not data.
const AD_MAX: u64 = 1 << 20;
/// The most a message to sign, a token to decrypt in one piece, or a rewrap list may be.
const MESSAGE_MAX: u64 = 256 << 20;

/// Where a command's result goes: stdout, or `--out` (crate::outfile).
enum Sink {
    Stdout(Stdout, u64),
    File(OutFile),
}

impl Sink {
    fn open(cli: &Cli, io: &Io) -> Result<Sink, Failure> {
        match &io.output {
            None => Ok(Sink::Stdout(Stdout::lock(), 0)),
            Some(path) => Ok(Sink::File(OutFile::create(path, &guarded(cli)?)?)),
        }
    }

    fn finish(self) -> Result<(), Failure> {
        match self {
            Sink::Stdout(s, _) => s.finish(),
            Sink::File(f) => f.finish(),
        }
    }

    /// The failure for an error writing to this sink.
    fn failure(&self, e: &std::io::Error) -> Failure {
        match self {
            Sink::Stdout(..) => stdout_failure(e),
            Sink::File(f) => fail(
                Exit::Other,
                format!("cannot write {}: {e}", f.path().display()),
            ),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(s, written) => {
                let n = s.raw().write(buf)?;
                *written += n as u64;
                Ok(n)
            }
            Sink::File(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s, _) => s.raw().flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

/// The directories no result may be written into: the vault's and its state directory.
#[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
pub(crate) fn guarded(cli: &Cli) -> Result<Vec<std::path::PathBuf>, Failure> {
    let mut dirs = vec![crate::location::state_dir(cli)?];
    // A vault in a database has no directory to guard.
    if let crate::location::Place::Dir(d) = crate::location::place(cli)? {
        dirs.push(d);
    }
    Ok(dirs)
}

fn input(io_in: &Option<std::path::PathBuf>) -> Result<Box<dyn Read>, Failure> {
    match io_in {
        None => Ok(crate::output::stdin()),
        Some(p) if crate::output::is_stdin_path(p) => Ok(crate::output::stdin()),
        Some(p) => std::fs::File::open(p)
            .map(|f| Box::new(f) as Box<dyn Read>)
            .map_err(|e| fail(Exit::NotFound, format!("cannot read {}: {e}", p.display()))),
    }
}

fn read_all(r: &mut dyn Read, what: &str) -> Result<SecretBytes, Failure> {
    let mut buf = Vec::new();
    r.take(MESSAGE_MAX + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(Exit::Other, format!("cannot read the {what}: {e}")))?;
    if buf.len() as u64 > MESSAGE_MAX {
        return Err(fail(
            Exit::Usage,
            format!("the {what} is larger than {} MiB", MESSAGE_MAX >> 20),
        ));
    }
    Ok(SecretBytes::new(buf))
}

fn associated_data(ad: &Ad) -> Result<Vec<u8>, Failure> {
    match (&ad.ad, &ad.ad_file) {
        (Some(t), _) => Ok(t.as_bytes().to_vec()),
        (None, Some(p)) => {
            let cannot = |e: std::io::Error| {
                let code = if e.kind() == std::io::ErrorKind::NotFound {
                    Exit::NotFound
                } else {
                    Exit::Other
                };
                fail(
                    code,
                    format!("cannot read associated data from {}: {e}", p.display()),
                )
            };
            let mut buf = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(AD_MAX + 1).read_to_end(&mut buf))
                .map_err(cannot)?;
            if buf.len() as u64 > AD_MAX {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "the associated data in {} is larger than {} KiB",
                        p.display(),
                        AD_MAX >> 10
                    ),
                ));
            }
            Ok(buf)
        }
        (None, None) => Ok(Vec::new()),
    }
}

/// Runs `vault key …`.
pub(crate) fn run(cli: &Cli, cmd: &KeyCommand) -> Result<(), Failure> {
    match cmd {
        KeyCommand::Create {
            name,
            algorithm,
            rotate_every,
            expires,
            allow,
        } => {
            let pass = current_passphrase(cli)?;
            let spec = KeySpec {
                algorithm: *algorithm,
                allowed: *allow,
                rotate_every_ms: *rotate_every,
                expires_ms: *expires,
            };
            let k = with_vault(cli, &pass, false, |v| v.create_key(name, spec.clone()))?;
            stderr_line(format!(
                "created key {name} ({}, allows {})",
                k.algorithm, k.allowed
            ));
            Ok(())
        }
        KeyCommand::List { json } => {
            let pass = current_passphrase(cli)?;
            let keys = with_vault(cli, &pass, false, Vault::keys)?;
            if !*json {
                let mut table = Table::new();
                for k in keys {
                    let mut row = vec![
                        k.name,
                        k.algorithm,
                        format!("v{} of {}", k.primary, k.versions.len()),
                    ];
                    if k.rotation_due {
                        row.push("rotation due".into());
                    }
                    table.row(row)?;
                }
                return table.finish();
            }
            let mut out = Stdout::lock();
            for k in keys {
                {
                    let line = serde_json::json!({
                        "name": k.name,
                        "algorithm": k.algorithm,
                        "primary": k.primary,
                        "versions": k.versions.len(),
                        "rotation_due": k.rotation_due,
                    });
                    out.write(format!("{line}\n").as_bytes())?;
                }
            }
            out.finish()
        }
        KeyCommand::Show { name, json } => {
            let pass = current_passphrase(cli)?;
            let k = with_vault(cli, &pass, false, |v| v.key(name))?;
            if *json { show_json(&k) } else { show(&k) }
        }
        KeyCommand::Rotate {
            name,
            due,
            stage,
            keep_active,
        } => {
            let pass = current_passphrase(cli)?;
            if *due {
                let rotated = with_vault(cli, &pass, false, Vault::rotate_due_keys)?;
                for (k, v) in &rotated {
                    stderr_line(format!("rotated {k} to version {v}"));
                }
                if rotated.is_empty() {
                    stderr_line("no key is due for rotation");
                }
                return Ok(());
            }
            let name = name.as_deref().unwrap_or_default();
            let options = RotateOptions {
                stage: *stage,
                keep_active: *keep_active,
            };
            let v = with_vault(cli, &pass, false, |v| v.rotate_key(name, options))?;
            if *stage {
                stderr_line(format!(
                    "added version {v} of {name} as pending; `vault key promote {name} {v}` makes it primary"
                ));
            } else {
                stderr_line(format!("rotated {name}: version {v} is primary"));
            }
            Ok(())
        }
        KeyCommand::Promote { name, version } => {
            let pass = current_passphrase(cli)?;
            with_vault(cli, &pass, false, |v| v.promote_key_version(name, *version))?;
            stderr_line(format!("version {version} of {name} is primary"));
            Ok(())
        }
        KeyCommand::SetState {
            name,
            version,
            state,
        } => {
            let pass = current_passphrase(cli)?;
            with_vault(cli, &pass, false, |v| {
                v.set_key_version_state(name, *version, *state)
            })?;
            stderr_line(format!(
                "version {version} of {name} is {}",
                state_name(*state)
            ));
            Ok(())
        }
        KeyCommand::SetPolicy {
            name,
            allow,
            loosen,
        } => {
            let pass = current_passphrase(cli)?;
            with_vault(cli, &pass, false, |v| {
                v.set_key_policy(name, *allow, *loosen)
            })?;
            stderr_line(format!("{name} allows {allow}"));
            Ok(())
        }
        KeyCommand::SetFloors {
            name,
            min_decrypt,
            min_encrypt,
        } => {
            if min_decrypt.is_none() && min_encrypt.is_none() {
                return Err(fail(
                    Exit::Usage,
                    "give --min-decrypt, --min-encrypt or both",
                ));
            }
            let pass = current_passphrase(cli)?;
            with_vault(cli, &pass, false, |v| {
                v.set_key_floors(name, *min_decrypt, *min_encrypt)
            })?;
            stderr_line(format!("floors of {name} set"));
            Ok(())
        }
        KeyCommand::SetExpiry { name, when } => {
            let pass = current_passphrase(cli)?;
            with_vault(cli, &pass, false, |v| v.set_key_expiry(name, when.0))?;
            match when.0 {
                Some(t) => stderr_line(format!("{name} expires {}", format_time(t))),
                None => stderr_line(format!("{name} never expires")),
            }
            Ok(())
        }
        KeyCommand::SetRotation { name, every } => {
            let pass = current_passphrase(cli)?;
            let every = every.0.map(|t| t as u64);
            with_vault(cli, &pass, false, |v| v.set_key_rotation(name, every))?;
            stderr_line(match every {
                Some(ms) => format!("{name} is rotated every {}", duration_text(ms)),
                None => format!("{name} is rotated by hand only"),
            });
            Ok(())
        }
        KeyCommand::Destroy { name, version } => {
            let pass = current_passphrase(cli)?;
            with_vault(cli, &pass, false, |v| v.destroy_key_version(name, *version))?;
            stderr_line(format!(
                "destroyed version {version} of {name} (its material leaves the files at the next `vault compact`)"
            ));
            Ok(())
        }
        KeyCommand::Encrypt {
            name,
            io,
            ad,
            binary,
            allow_compromised,
        } => encrypt(
            cli,
            name,
            io,
            ad,
            *binary,
            UseOptions {
                allow_compromised: *allow_compromised,
            },
        ),
        KeyCommand::Decrypt {
            name,
            io,
            ad,
            allow_compromised,
        } => decrypt(cli, name, io, ad, *allow_compromised),
        KeyCommand::Rewrap {
            name,
            io,
            ad,
            allow_compromised,
        } => rewrap(cli, name, io, ad, *allow_compromised),
        KeyCommand::Datakey {
            name,
            ad,
            wrapped_only,
            allow_compromised,
        } => {
            let ad = associated_data(ad)?;
            let pass = current_passphrase(cli)?;
            let options = UseOptions {
                allow_compromised: *allow_compromised,
            };
            let (dk, wrapped) =
                with_vault(cli, &pass, false, |v| v.datakey_with(name, &ad, options))?;
            let wrapped = token::to_text(&wrapped).map_err(|e| fail(Exit::Other, e.to_string()))?;
            let line = if *wrapped_only {
                format!("{wrapped}\n")
            } else {
                use base64ct::{Base64, Encoding};
                let b64 = zeroize::Zeroizing::new(Base64::encode_string(dk.expose_secret()));
                let out = zeroize::Zeroizing::new(format!(
                    "{{\"plaintext\":\"{}\",\"wrapped\":\"{wrapped}\"}}\n",
                    &*b64
                ));
                out.to_string()
            };
            let line = zeroize::Zeroizing::new(line);
            let mut out = Stdout::lock();
            out.write(line.as_bytes())?;
            out.finish()
        }
        KeyCommand::Sign {
            name,
            io,
            binary,
            allow_compromised,
        } => {
            let message = read_all(&mut *input(&io.input)?, "message")?;
            let pass = current_passphrase(cli)?;
            let options = UseOptions {
                allow_compromised: *allow_compromised,
            };
            let sig = with_vault(cli, &pass, false, |v| {
                v.sign_with(name, message.expose_secret(), options)
            })?;
            let mut sink = Sink::open(cli, io)?;
            if *binary {
                sink.write_all(&sig).map_err(|e| sink.failure(&e))?;
            } else {
                let text = token::to_text(&sig).map_err(|e| fail(Exit::Other, e.to_string()))?;
                writeln!(sink, "{text}").map_err(|e| sink.failure(&e))?;
            }
            sink.finish()
        }
        KeyCommand::Verify {
            name,
            signature,
            signature_file,
            input: message_in,
            allow_compromised,
        } => {
            let sig = match (signature, signature_file) {
                (Some(t), _) => token::from_text(t)
                    .map_err(|e| fail(Exit::BadToken, format!("not a valid signature: {e}")))?,
                (None, Some(p)) => {
                    let bytes = std::fs::read(p).map_err(|e| {
                        fail(Exit::NotFound, format!("cannot read {}: {e}", p.display()))
                    })?;
                    if token::looks_like_text(&bytes) {
                        let text = String::from_utf8(bytes)
                            .map_err(|_| fail(Exit::BadToken, "not a valid signature: not text"))?;
                        token::from_text(&text).map_err(|e| {
                            fail(Exit::BadToken, format!("not a valid signature: {e}"))
                        })?
                    } else {
                        bytes
                    }
                }
                (None, None) => {
                    return Err(fail(Exit::Usage, "give --signature or --signature-file"));
                }
            };
            let message = read_all(&mut *input(message_in)?, "message")?;
            let pass = current_passphrase(cli)?;
            let options = UseOptions {
                allow_compromised: *allow_compromised,
            };
            with_vault(cli, &pass, false, |v| {
                v.verify_signature(name, message.expose_secret(), &sig, options)
            })?;
            stderr_line("signature verified");
            Ok(())
        }
        KeyCommand::Export {
            names,
            all,
            out,
            json,
            public,
            kdf,
        } => super::transfer::key_export(cli, names, *all, out, *json, *public, kdf),
        KeyCommand::Import {
            file,
            rename,
            replace,
        } => super::transfer::key_import(cli, file, rename, *replace),
        KeyCommand::Public { name, version } => {
            let pass = current_passphrase(cli)?;
            let public = with_vault(cli, &pass, false, |v| v.public_key(name, *version))?;
            let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
            let mut out = Stdout::lock();
            out.write(format!("{hex}\n").as_bytes())?;
            out.finish()
        }
    }
}

/// A duration in the largest unit that divides it: `30d`, `12h`, `90s`.
fn duration_text(ms: u64) -> String {
    for (unit, scale) in [
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

/// `key show --json`: one object; times as RFC 3339 and as ms, like `history --json`.
fn show_json(k: &KeyInfo) -> Result<(), Failure> {
    let time = |ms: i64| serde_json::json!(format_time(ms));
    let versions: Vec<_> = k
        .versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.version,
                "state": state_name(v.state),
                "primary": v.version == k.primary,
                "created": time(v.created_ms),
                "created_ms": v.created_ms,
                "changed": time(v.state_changed_ms),
                "changed_ms": v.state_changed_ms,
            })
        })
        .collect();
    let obj = serde_json::json!({
        "name": k.name,
        "algorithm": k.algorithm,
        "key_id": k.key_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "primary": k.primary,
        "allows": k.allowed.names(),
        "min_decrypt_version": k.min_decrypt_version,
        "min_encrypt_version": k.min_encrypt_version,
        "expires": k.expires_ms.map(time),
        "expires_ms": k.expires_ms,
        "rotate_every_ms": k.rotate_every_ms,
        "rotation_due": k.rotation_due,
        "created": time(k.created_ms),
        "created_ms": k.created_ms,
        "changed": time(k.changed_ms),
        "changed_ms": k.changed_ms,
        "versions": versions,
    });
    let mut out = Stdout::lock();
    out.write(format!("{obj}\n").as_bytes())?;
    out.finish()
}

fn show(k: &KeyInfo) -> Result<(), Failure> {
    let mut out = Stdout::lock();
    let opt_time = |t: Option<i64>| t.map_or_else(|| "never".to_string(), format_time);
    let mut text = format!(
        "name\t{}\nalgorithm\t{}\nkey id\t{}\nprimary\t{}\nallows\t{}\nmin decrypt version\t{}\nmin encrypt version\t{}\nexpires\t{}\nrotate every\t{}\ncreated\t{}\n",
        k.name,
        k.algorithm,
        k.key_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        k.primary,
        k.allowed,
        k.min_decrypt_version,
        k.min_encrypt_version,
        opt_time(k.expires_ms),
        k.rotate_every_ms.map_or_else(
            || "never".to_string(),
            |ms| format!(
                "{}{}",
                duration_text(ms),
                if k.rotation_due { " (due)" } else { "" }
            )
        ),
        format_time(k.created_ms),
    );
    text.push_str("versions:\n");
    for v in &k.versions {
        text.push_str(&format!(
            "  {}\t{}\tcreated {}\tchanged {}{}\n",
            v.version,
            state_name(v.state),
            format_time(v.created_ms),
            format_time(v.state_changed_ms),
            if v.version == k.primary {
                "\tprimary"
            } else {
                ""
            }
        ));
    }
    out.write(text.as_bytes())?;
    out.finish()
}

fn encrypt(
    cli: &Cli,
    name: &str,
    io: &Io,
    ad: &Ad,
    binary: bool,
    options: UseOptions,
) -> Result<(), Failure> {
    let ad = associated_data(ad)?;
    let mut reader = input(&io.input)?;
    if io.input.is_none() && crate::output::stdin_is_terminal() {
        stderr_line("reading the plaintext from the terminal; end it with Ctrl-D");
    }
    // Up to ONE_SHOT_MAX bytes, then decide: what ends by then is one token, the rest a stream.
    let mut head = Vec::with_capacity(ONE_SHOT_MAX + 1);
    (&mut reader)
        .take(ONE_SHOT_MAX as u64 + 1)
        .read_to_end(&mut head)
        .map_err(|e| fail(Exit::Other, format!("cannot read the plaintext: {e}")))?;
    let head = zeroize::Zeroizing::new(head);
    let pass = current_passphrase(cli)?;
    let mut sink = Sink::open(cli, io)?;
    if head.len() <= ONE_SHOT_MAX {
        let t = with_vault(cli, &pass, false, |v| {
            v.encrypt_with(name, &head, &ad, options)
        })?;
        if binary {
            sink.write_all(&t).map_err(|e| sink.failure(&e))?;
        } else {
            let text = token::to_text(&t).map_err(|e| fail(Exit::Other, e.to_string()))?;
            writeln!(sink, "{text}").map_err(|e| sink.failure(&e))?;
        }
        return sink.finish();
    }
    let input = RefCell::new(Rewind::new(
        std::io::Cursor::new(head).chain(reader),
        REWIND_MAX,
    ));
    let sink = RefCell::new(Some(sink));
    with_vault(cli, &pass, false, |v| {
        // Another process may rotate the master key between the open and the use: the
        // operation then starts over, with the input from its first byte (the key's material
        // is fetched before any of it is read, so nothing of it is lost).
        let mut input = input.borrow_mut();
        if !input.rewind() {
            return Err(consumed());
        }
        let mut guard = sink.borrow_mut();
        let Some(s) = guard.as_mut() else {
            return Ok(0);
        };
        if binary {
            v.encrypt_stream_with(name, &ad, &mut *input, s, options)
        } else {
            let mut w = TextWriter::new(&mut *s);
            let n = v.encrypt_stream_with(name, &ad, &mut *input, &mut w, options)?;
            w.finish()
                .map_err(|e| vault_store::Error::storage("writing", "the output", e))?;
            Ok(n)
        }
    })?;
    match sink.into_inner() {
        Some(s) => s.finish(),
        None => Ok(()),
    }
}

fn decrypt(
    cli: &Cli,
    name: &str,
    io: &Io,
    ad: &Ad,
    allow_compromised: bool,
) -> Result<(), Failure> {
    let ad = associated_data(ad)?;
    let mut reader = input(&io.input)?;
    // Peek enough to tell the text form from the binary one.
    let mut peek = Vec::with_capacity(64);
    (&mut reader)
        .take(64)
        .read_to_end(&mut peek)
        .map_err(|e| fail(Exit::Other, format!("cannot read the token: {e}")))?;
    let text = token::looks_like_text(&peek);
    let pass = current_passphrase(cli)?;
    let options = UseOptions { allow_compromised };
    let source = RefCell::new(Rewind::new(
        std::io::Cursor::new(peek).chain(reader),
        REWIND_MAX,
    ));
    let sink = RefCell::new(Some(Sink::open(cli, io)?));
    let result = with_vault(cli, &pass, false, |v| {
        // Started over after a concurrent master-key rotation: the token again from its first
        // byte (what was read of it is kept; nothing was written yet, as nothing is before the
        // key's material is fetched).
        let mut src = source.borrow_mut();
        let mut guard = sink.borrow_mut();
        let Some(s) = guard.as_mut() else {
            return Ok(0);
        };
        if !src.rewind() || matches!(s, Sink::Stdout(_, n) if *n > 0) {
            return Err(consumed());
        }
        if text {
            let mut r = TextReader::new(&mut *src);
            v.decrypt_stream(name, &ad, &mut r, s, options)
        } else {
            v.decrypt_stream(name, &ad, &mut *src, s, options)
        }
    });
    match result {
        // On failure the temporary --out file is removed when the sink drops: nothing is left.
        Err(mut f) => {
            let wrote = matches!(sink.borrow().as_ref(), Some(Sink::Stdout(_, n)) if *n > 0);
            if wrote && let Some(m) = f.message.as_mut() {
                m.push_str(
                    "; anything already written to stdout is incomplete: discard it (with --out FILE nothing is written on failure)",
                );
            }
            Err(f)
        }
        Ok(_) => match sink.into_inner() {
            Some(s) => s.finish(),
            None => Ok(()),
        },
    }
}

fn rewrap(cli: &Cli, name: &str, io: &Io, ad: &Ad, allow_compromised: bool) -> Result<(), Failure> {
    let ad = associated_data(ad)?;
    let all = read_all(&mut *input(&io.input)?, "tokens")?;
    let text = std::str::from_utf8(all.expose_secret())
        .map_err(|_| fail(Exit::Usage, "rewrap reads text tokens, one per line"))?;
    let mut tokens = Vec::new();
    // A blank line stays a blank line, so output line N answers input line N.
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            tokens.push((i + 1, Vec::new()));
            continue;
        }
        let t = token::from_text(line).map_err(|e| {
            fail(
                Exit::BadToken,
                format!(
                    "line {}: not a valid token: {e} (nothing was written)",
                    i + 1
                ),
            )
        })?;
        tokens.push((i + 1, t));
    }
    let pass = current_passphrase(cli)?;
    let options = UseOptions { allow_compromised };
    let failed_at = std::cell::Cell::new(0);
    let out = with_vault(cli, &pass, false, |v| {
        let mut out = Vec::with_capacity(tokens.len());
        for (line, t) in &tokens {
            if t.is_empty() {
                out.push(Vec::new());
                continue;
            }
            failed_at.set(*line);
            out.push(v.rewrap(name, t, &ad, options)?);
        }
        failed_at.set(0);
        Ok(out)
    })
    .map_err(|mut f| {
        if failed_at.get() > 0
            && let Some(m) = f.message.as_mut()
        {
            *m = format!("line {}: {m} (nothing was written)", failed_at.get());
        }
        f
    })?;
    let mut sink = Sink::open(cli, io)?;
    for t in out {
        let text = if t.is_empty() {
            String::new()
        } else {
            token::to_text(&t).map_err(|e| fail(Exit::Other, e.to_string()))?
        };
        writeln!(sink, "{text}").map_err(|e| sink.failure(&e))?;
    }
    sink.finish()
}
