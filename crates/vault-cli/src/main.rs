//! `vault`: keep secrets and keys in a passphrase-protected, crash-safe vault.
//!
//! Secret values are never taken from the command line (where `ps` and shell history would see
//! them): `set` reads stdin when it is not a terminal, else asks twice at a hidden prompt. `get`
//! writes exactly the stored bytes to stdout.

mod agent;
mod cli;
mod cli_keys;
mod commands;
mod exit;
mod failure;
mod import;
mod location;
mod logging;
mod outfile;
mod output;
mod passphrase;
mod permissions;
mod progress;
mod rewind;
mod terminal;
mod text;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::Exit;
pub(crate) use crate::failure::{Failure, fail};
use crate::output::{stderr_line, stdout_failure};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return Exit::Usage.into();
        }
        // --help and --version: their text goes to stdout, under stdout's rule.
        Err(e) => return exit(e.print().map_err(|e| stdout_failure(&e))),
    };
    logging::init(cli.verbose);
    if let Command::AgentServe { timeout_secs } = cli.command {
        return agent::serve::serve(&cli, std::time::Duration::from_secs(timeout_secs));
    }
    if let Some(code) = agent::client::delegate(&cli) {
        return code;
    }
    exit(run(cli))
}

fn exit(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if let Some(message) = f.message {
                stderr_line(format!("vault: {}", message.replace('\n', " ")));
            }
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Init(a) => commands::maintenance::init(&cli, a),
        Command::Set {
            name,
            expect_version,
            tags,
            allow_empty,
            trim,
        } => commands::secrets::set(&cli, name, expect_version, tags, *allow_empty, *trim),
        Command::Get { name, version } => commands::secrets::get(&cli, name, version),
        Command::List { all, json } => commands::secrets::list(&cli, all, *json),
        Command::Rm { name } => commands::secrets::rm(&cli, name),
        Command::Undelete { name } => commands::secrets::undelete(&cli, name),
        Command::Destroy { name, yes } => commands::secrets::destroy(&cli, name, *yes),
        Command::Import {
            file,
            format: Some(format),
            dry_run,
            allow_empty,
            replace: false,
        } => commands::import::import(&cli, file, *format, *dry_run, *allow_empty),
        Command::Import {
            file: _,
            format: Some(_),
            replace: true,
            ..
        } => Err(fail(
            exit::Exit::Usage,
            "--replace is for vault exports (no --format)",
        )),
        Command::Import {
            file,
            format: None,
            replace,
            dry_run,
            ..
        } => commands::transfer::import(&cli, file, *replace, *dry_run),
        Command::Export {
            names,
            all,
            keys,
            out,
            json,
            plaintext,
            format,
            kdf,
        } => {
            let format = format.or(plaintext.then_some(import::Format::Jsonl));
            commands::transfer::export(&cli, names, *all, *keys, out, *json, format, kdf)
        }
        Command::History { name, json } => commands::secrets::history(&cli, name, *json),
        Command::ChangePassphrase => commands::slots::change_passphrase(&cli),
        Command::MaxVersions { count } => commands::secrets::max_versions(&cli, count),
        Command::AddPassphrase => commands::slots::add_passphrase(&cli),
        Command::RemovePassphrase { slot, yes } => {
            commands::slots::remove_passphrase(&cli, slot, *yes)
        }
        Command::Slots { json } => commands::slots::slots(&cli, *json),
        Command::RotateMasterKey { drop_other_slots } => {
            commands::slots::rotate_master_key(&cli, drop_other_slots)
        }
        Command::Verify { json } => commands::maintenance::verify(&cli, *json),
        Command::Compact => commands::maintenance::compact(&cli),
        Command::Upgrade => commands::maintenance::upgrade(&cli),
        Command::AcceptRollback => commands::maintenance::accept_rollback(&cli),
        Command::Key { command } => commands::keys::run(&cli, command),
        Command::Member { command } => commands::members::run(&cli, command),
        Command::Inject { input, out } => {
            commands::inject::inject(&cli, input.as_deref(), out.as_ref())
        }
        Command::Run {
            only,
            prefix,
            command,
        } => commands::run::run(&cli, only, prefix.as_deref(), command),
        Command::EnvValues { only, prefix } => {
            commands::run::env_values(&cli, only, prefix.as_deref())
        }
        Command::Doctor { json } => commands::doctor::doctor(&cli, *json),
        Command::Completions { shell } => commands::docs::completions(*shell),
        Command::ManPages { dir } => commands::docs::man_pages(dir),
        Command::Unlock { timeout } => agent::client::unlock(&cli, timeout),
        Command::Lock => agent::client::lock(&cli),
        Command::AgentServe { .. } => {
            Err(fail(Exit::Usage, "the agent is started by `vault unlock`"))
        }
        Command::Audit {
            action: Some(cli::AuditAction::Verify),
            ..
        } => commands::audit::verify(&cli),
        Command::Audit {
            action: Some(cli::AuditAction::Policy(args)),
            ..
        } => commands::audit::policy(&cli, args),
        Command::Audit {
            action: None,
            query,
        } => commands::audit::query(&cli, query),
        Command::Backup {
            action:
                Some(cli::BackupAction::Verify {
                    files,
                    use_vault_passphrase,
                }),
            ..
        } => commands::backups::check(&cli, files, *use_vault_passphrase),
        Command::Backup {
            action: None,
            file,
            no_compress,
            comment,
            use_vault_passphrase,
            include_audit,
            since,
            kdf,
        } => match file {
            Some(f) => commands::backups::make(
                &cli,
                &commands::backups::MakeRequest {
                    file: f,
                    since: since.as_deref(),
                    include_audit: *include_audit,
                    no_compress: *no_compress,
                    comment,
                    use_vault_passphrase: *use_vault_passphrase,
                    kdf,
                },
            ),
            None => Err(fail(
                exit::Exit::Usage,
                "give the backup file, or `-` for stdout",
            )),
        },
        Command::Restore {
            files,
            to,
            force,
            use_vault_passphrase,
            kdf,
        } => commands::backups::restore_into(&cli, files, to, *force, *use_vault_passphrase, kdf),
    }
}
