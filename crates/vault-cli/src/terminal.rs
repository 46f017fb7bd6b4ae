//! Putting the terminal back when a signal ends a hidden prompt (or erasing a progress line).
//!
//! rpassword turns echo off while it reads and restores the terminal when it returns, but on
//! Ctrl-C it raises SIGINT before restoring, and a SIGTERM or SIGHUP from outside never reaches
//! it: either left the user's shell with echo off. So the terminal's state from before each
//! prompt is kept here, and a handler thread puts it back on SIGINT, SIGTERM or SIGHUP, then
//! lets the signal end the process as it would have. Dying by the signal, rather than exiting
//! with 128 + its number, is what shells expect: both show as `$? = 130` after Ctrl-C, but only
//! the signal tells a script running `x=$(vault get ...)` that its user pressed Ctrl-C, so the
//! script stops too.

use std::fs::{File, OpenOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;

use rustix::termios::{self, OptionalActions, Termios};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// While a prompt is up: the terminal and its state from before the prompt.
static SAVED: Mutex<Option<(File, Termios)>> = Mutex::new(None);

fn saved() -> MutexGuard<'static, Option<(File, Termios)>> {
    // Nothing panics while holding the lock; if something did, the state is still right.
    SAVED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the terminal's state for the signal handler until the prompt has returned (rpassword
/// has restored the terminal by then).
pub(crate) struct PromptGuard(());

impl Drop for PromptGuard {
    fn drop(&mut self) {
        *saved() = None;
    }
}

/// Saves the terminal's state before a hidden prompt and makes sure a signal puts it back.
/// Best effort: with no handler or no terminal state the prompt still works, as it always did.
pub(crate) fn before_prompt() -> PromptGuard {
    if watch_signals()
        && let Ok(tty) = OpenOptions::new().read(true).write(true).open("/dev/tty")
        && let Ok(state) = termios::tcgetattr(&tty)
    {
        *saved() = Some((tty, state));
    }
    PromptGuard(())
}

/// For a prompt that reports Ctrl-C: rpassword reads ^C as a character and raises SIGINT
/// itself, which the handler thread is already acting on; ending here the same way makes the
/// outcome the same whichever thread gets there first.
pub(crate) fn interrupted() -> ! {
    end_by(SIGINT)
}

/// A progress line is on stderr: a signal erases it before ending the process, so that the
/// shell's prompt does not follow it on the same line.
static PROGRESS_DRAWN: AtomicBool = AtomicBool::new(false);

/// Notes whether a progress line is drawn (and makes sure a signal can erase it).
pub(crate) fn progress_drawn(drawn: bool) {
    if drawn {
        watch_signals();
    }
    PROGRESS_DRAWN.store(drawn, Ordering::SeqCst);
}

fn end_by(signal: i32) -> ! {
    if let Some((tty, state)) = saved().take() {
        let _ = termios::tcsetattr(&tty, OptionalActions::Now, &state);
    }
    if PROGRESS_DRAWN.load(Ordering::SeqCst) {
        use std::io::Write;
        let _ = std::io::stderr().write_all(b"\r\x1b[2K");
    }
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    // Reached only if the signal could not be re-raised with its default action.
    std::process::exit(128 + signal)
}

/// Starts the handler thread, once; false if it cannot be had. It stays for the rest of the
/// process (signal-hook cannot give back the default handlers), ending it as they would.
fn watch_signals() -> bool {
    static WATCHING: OnceLock<bool> = OnceLock::new();
    *WATCHING.get_or_init(|| {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return false;
        };
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    end_by(signal);
                }
            })
            .is_ok()
    })
}
