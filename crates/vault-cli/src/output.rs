//! Writing to stdout and stderr without ever panicking (`println!`/`eprintln!` panic when the
//! write fails, which turned a durable commit into exit 101 when stderr was full).
//!
//! The rule: a failed write to stderr is dropped, as there is nowhere left to report it. On
//! stdout, a reader that went away (EPIPE, as in `vault list | head -1`) ends the command quietly
//! with exit 0, as ripgrep and other filters do; any other failure (a full disk) is exit 1 with a
//! one-line message on stderr. Either way the exit code reflects the operation, never a panic.

use std::fmt::Display;
use std::io::{self, IsTerminal, Read, Write};

use crate::agent::served::{self, Stream};
use crate::exit::Exit;
use crate::{Failure, fail};

/// Writes `message` and a newline to stderr, best effort.
pub(crate) fn stderr_line(message: impl Display) {
    // One formatted buffer, one write: lines from several threads (the logger) do not interleave.
    let line = format!("{message}\n");
    match served::stream(Stream::Err) {
        Some(mut f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// Whether stdout is a terminal (the served client's, under the agent).
pub(crate) fn stdout_is_terminal() -> bool {
    served::stream(Stream::Out).map_or_else(|| io::stdout().is_terminal(), |f| f.is_terminal())
}

/// Whether stderr is a terminal (the served client's, under the agent).
pub(crate) fn stderr_is_terminal() -> bool {
    served::stream(Stream::Err).map_or_else(|| io::stderr().is_terminal(), |f| f.is_terminal())
}

/// Whether stdin is a terminal (the served client's, under the agent).
pub(crate) fn stdin_is_terminal() -> bool {
    served::stream(Stream::In).map_or_else(|| io::stdin().is_terminal(), |f| f.is_terminal())
}

/// A handle on stdout's descriptor (the served client's, under the agent), written where it
/// stands.
pub(crate) fn stdout_file() -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    match served::stream(Stream::Out) {
        Some(f) => Ok(f),
        None => io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from),
    }
}

/// A handle on stderr's descriptor (the served client's, under the agent).
pub(crate) fn stderr_file() -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    match served::stream(Stream::Err) {
        Some(f) => Ok(f),
        None => io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from),
    }
}

/// Whether `p` names stdin (`-`, `/dev/stdin` and its aliases): read from the descriptor this
/// command was given (under the agent, its client's).
/// Whether `p` names stdout (`-`, `/dev/stdout`, …).
pub(crate) fn is_stdout_path(p: &std::path::Path) -> bool {
    [
        std::path::Path::new("-"),
        std::path::Path::new("/dev/stdout"),
        std::path::Path::new("/proc/self/fd/1"),
        std::path::Path::new("/dev/fd/1"),
    ]
    .contains(&p)
}

pub(crate) fn is_stdin_path(p: &std::path::Path) -> bool {
    [
        std::path::Path::new("-"),
        std::path::Path::new("/dev/stdin"),
        std::path::Path::new("/proc/self/fd/0"),
        std::path::Path::new("/dev/fd/0"),
    ]
    .contains(&p)
}

/// Stdin as a reader (the served client's, under the agent).
pub(crate) fn stdin() -> Box<dyn Read> {
    match served::stream(Stream::In) {
        Some(f) => Box::new(f),
        None => Box::new(io::stdin().lock()),
    }
}

/// What a failed write to stdout means for the exit code.
pub(crate) fn stdout_failure(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::reader_gone()
    } else {
        fail(Exit::Other, format!("cannot write to stdout: {e}"))
    }
}

/// Stdout, locked for a command's output and flushed explicitly: the implicit flush at exit
/// would drop a write error on the floor.
pub(crate) struct Stdout(Box<dyn Write>);

impl Stdout {
    pub(crate) fn lock() -> Self {
        match served::stream(Stream::Out) {
            // The client's stdout under the agent: buffered here, flushed by `finish`.
            Some(f) => Self(Box::new(io::BufWriter::new(f))),
            None => Self(Box::new(io::stdout().lock())),
        }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.0.write_all(bytes).map_err(|e| stdout_failure(&e))
    }

    /// The stream itself, for writers that take `impl Write`.
    pub(crate) fn raw(&mut self) -> &mut dyn Write {
        &mut self.0
    }

    /// Flushes what is still buffered (a value with no trailing newline, for one).
    pub(crate) fn finish(mut self) -> Result<(), Failure> {
        self.0.flush().map_err(|e| stdout_failure(&e))
    }
}

/// Rows of cells for a person: in aligned columns when stdout is a terminal, as tab-separated
/// lines otherwise (what `cut -f` and `awk -F'\t'` read, written as they come). On a terminal
/// the rows are kept until [`Table::finish`], to measure the columns.
pub(crate) struct Table {
    out: Stdout,
    aligned: Option<Vec<Vec<String>>>,
}

impl Table {
    pub(crate) fn new() -> Self {
        Table {
            out: Stdout::lock(),
            aligned: stdout_is_terminal().then(Vec::new),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) -> Result<(), Failure> {
        match &mut self.aligned {
            Some(rows) => {
                rows.push(cells);
                Ok(())
            }
            None => self.out.write(format!("{}\n", cells.join("\t")).as_bytes()),
        }
    }

    pub(crate) fn finish(mut self) -> Result<(), Failure> {
        if let Some(rows) = self.aligned.take() {
            let mut widths: Vec<usize> = Vec::new();
            for row in &rows {
                for (i, cell) in row.iter().enumerate() {
                    let w = cell.chars().count();
                    match widths.get_mut(i) {
                        Some(max) => *max = (*max).max(w),
                        None => widths.push(w),
                    }
                }
            }
            for row in rows {
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    line.push_str(cell);
                    if i + 1 < row.len() {
                        let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                        line.extend(std::iter::repeat_n(' ', pad + 2));
                    }
                }
                // An empty last cell leaves only padding behind.
                line.truncate(line.trim_end_matches(' ').len());
                line.push('\n');
                self.out.write(line.as_bytes())?;
            }
        }
        self.out.finish()
    }
}

/// Writes `line` and a newline to stdout.
pub(crate) fn stdout_line(line: impl Display) -> Result<(), Failure> {
    let mut out = Stdout::lock();
    out.write(format!("{line}\n").as_bytes())?;
    out.finish()
}

/// Asks `question` on the terminal and reads a line: whether the answer is yes. Without a
/// terminal on stdin and stderr there is no one to ask: `what` (the command) needs `--yes`,
/// and the refusal says so.
pub(crate) fn confirm(question: &str, what: &str) -> Result<(), Failure> {
    if !(stdin_is_terminal() && stderr_is_terminal()) {
        return Err(fail(
            Exit::Usage,
            format!(
                "{what} cannot be undone: pass --yes to confirm (there is no terminal to ask on)"
            ),
        ));
    }
    match served::stream(Stream::Err) {
        Some(mut f) => {
            let _ = f.write_all(format!("{question} [y/N] ").as_bytes());
        }
        None => {
            let _ = io::stderr()
                .lock()
                .write_all(format!("{question} [y/N] ").as_bytes());
        }
    }
    let mut input = stdin();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match input.read(&mut byte) {
            Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&line).trim().to_ascii_lowercase();
    if answer == "y" || answer == "yes" {
        Ok(())
    } else {
        Err(fail(
            Exit::Usage,
            format!("{what}: not confirmed; nothing was changed"),
        ))
    }
}
