//! Log output on stderr: `-v` (info), `-vv` (debug) or `VAULT_LOG` (an `EnvFilter` directive),
//! written to the client's stderr when the agent serves a command, at that command's `-v` level.
//!
//! What is logged is for a user finding out why a command is slow or failing: paths, lock waits,
//! key-derivation and open times, generations, commit sizes and fsync times. Never a value, a
//! passphrase or (at these levels) a secret's name.

use std::io::Write;

use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

use crate::agent::served;

/// Installs the logger for this process: `verbose` is the count of `-v`; `VAULT_LOG`, when set,
/// wins over it for the process's own commands.
pub(crate) fn init(verbose: u8) {
    let direct = match vault_log() {
        None => EnvFilter::new(level(verbose).as_str()),
        Some(v) => EnvFilter::try_new(&v).unwrap_or_else(|_| {
            // The directives that parse still apply, and the user hears about the others
            // (tracing's own lossy parser would say so with `eprintln!`, which panics when
            // stderr fails).
            let (good, bad): (Vec<&str>, Vec<&str>) = v
                .split(',')
                .filter(|d| !d.trim().is_empty())
                .partition(|d| EnvFilter::try_new(d).is_ok());
            crate::output::stderr_line(format!(
                "warning: VAULT_LOG: ignoring {}",
                bad.iter()
                    .map(|d| format!("{d:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            EnvFilter::try_new(good.join(","))
                .unwrap_or_else(|_| EnvFilter::new(level(verbose).as_str()))
        }),
    };
    let own = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // On a failed write the subscriber would otherwise report it with `eprintln!`, which
        // panics when stderr is what failed.
        .log_internal_errors(false)
        .without_time()
        // Module paths mean nothing to a user; they help a developer asking for more output.
        .with_target(verbose > 1)
        .with_filter(direct.and(filter::dynamic_filter_fn(|_, _| !served::active())));
    // A served command's events go to its client's stderr, at the level its `-v` asked for. Both
    // filters are dynamic ones: a plain `filter_fn` is asked once per call site and its answer
    // kept, which would freeze whichever command first reached the call site.
    let served_layer = tracing_subscriber::fmt::layer()
        .with_writer(ClientStderr)
        .log_internal_errors(false)
        .without_time()
        .with_target(false)
        .with_filter(filter::dynamic_filter_fn(|meta, _| {
            served::active() && *meta.level() <= served::log_level()
        }));
    let _ = tracing_subscriber::registry()
        .with(own)
        .with(served_layer)
        .try_init();
}

/// The most detailed level `-v` × `verbose` shows.
pub(crate) fn level(verbose: u8) -> tracing::Level {
    match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    }
}

/// `VAULT_LOG`, when set to something.
pub(crate) fn vault_log() -> Option<String> {
    std::env::var("VAULT_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The most detailed level a `VAULT_LOG` filter shows anywhere: what a command the agent runs
/// logs at (for every module; the filter's per-module parts are not applied there).
pub(crate) fn most_detailed(directives: &str) -> Option<tracing::Level> {
    let good: Vec<&str> = directives
        .split(',')
        .filter(|d| EnvFilter::try_new(d).is_ok())
        .collect();
    EnvFilter::try_new(good.join(","))
        .ok()?
        .max_level_hint()?
        .into_level()
}

/// Writes to the served client's stderr (nowhere when none is being served).
struct ClientStderr;

impl<'a> MakeWriter<'a> for ClientStderr {
    type Writer = Box<dyn Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match served::stream(served::Stream::Err) {
            Some(f) => Box::new(f),
            None => Box::new(std::io::sink()),
        }
    }
}
