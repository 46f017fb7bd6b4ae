//! Progress on stderr for work that can take over a second (backup, restore, import, compaction,
//! master-key rotation, Argon2id calibration, verify): a bar when the amount is known, a spinner
//! otherwise. Shown only when stderr is a terminal, only once the work has taken a second (a fast
//! command prints nothing), and cleared when the work ends, so that nothing is left for scripts
//! or in a terminal's scrollback.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before its progress is shown.
const DELAY: Duration = Duration::from_secs(1);

/// What a bar counts.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Records,
    Bytes,
}

/// One line of progress; cleared when dropped.
pub(crate) struct Bar {
    bar: ProgressBar,
    /// Dropped to stop the thread that shows the bar after [`DELAY`].
    stop: Option<mpsc::Sender<()>>,
    shower: Option<JoinHandle<()>>,
}

impl Bar {
    /// A spinner saying `label` and the time taken.
    pub(crate) fn spinner(label: &str) -> Self {
        Self::start(None, &format!("{{spinner}} {label} ({{elapsed}})"))
    }

    /// A bar for `total` units of work (or a counter when the total is not known).
    pub(crate) fn counted(label: &str, unit: Unit, total: Option<u64>) -> Self {
        let template = match (unit, total) {
            (Unit::Records, Some(_)) => {
                format!("{label} [{{bar:30}}] {{pos}}/{{len}} records ({{elapsed}})")
            }
            (Unit::Records, None) => format!("{{spinner}} {label}: {{pos}} records ({{elapsed}})"),
            (Unit::Bytes, Some(_)) => format!(
                "{label} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{elapsed}})"
            ),
            (Unit::Bytes, None) => {
                format!("{{spinner}} {label}: {{bytes}} ({{bytes_per_sec}}, {{elapsed}})")
            }
        };
        Self::start(total, &template)
    }

    fn start(total: Option<u64>, template: &str) -> Self {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        if !wanted() {
            return Bar {
                bar,
                stop: None,
                shower: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let shown = bar.clone();
        let shower = std::thread::spawn(move || {
            if stopped.recv_timeout(DELAY) == Err(RecvTimeoutError::Timeout) {
                crate::terminal::progress_drawn(true);
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(120));
            }
        });
        Bar {
            bar,
            stop: Some(stop),
            shower: Some(shower),
        }
    }

    /// Adds `n` units done.
    pub(crate) fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Sets the units done, and the total.
    pub(crate) fn set(&self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(shower) = self.shower.take() {
            let _ = shower.join();
        }
        self.bar.finish_and_clear();
        crate::terminal::progress_drawn(false);
    }
}

/// Whether progress is shown at all: on a terminal, and not for a command the agent serves
/// (its stderr is another process's).
fn wanted() -> bool {
    !crate::agent::served::active() && crate::output::stderr_is_terminal()
}

/// A [`vault_store::Progress`] that draws the store's long operations (compaction, whether asked
/// for or automatic, and master-key rotation) as a bar, from their first step to their last.
pub(crate) fn for_store() -> vault_store::Progress {
    let current: Arc<Mutex<Option<(&'static str, Bar)>>> = Arc::default();
    vault_store::Progress::from_fn(move |step| {
        let Ok(mut current) = current.lock() else {
            return;
        };
        if current.as_ref().is_none_or(|(what, _)| *what != step.what) {
            *current = Some((
                step.what,
                Bar::counted(step.what, Unit::Records, Some(step.total)),
            ));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set(step.done, step.total);
        }
        if step.done >= step.total {
            *current = None;
        }
    })
}
