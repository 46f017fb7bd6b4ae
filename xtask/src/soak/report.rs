//! What a soak counted and what went wrong, merged over the workers, and the summary printed at
//! the end of each filesystem's run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::child::Outcome;

/// Failures kept with their full stderr (all are counted and classified).
const KEPT: usize = 50;
/// Failures printed in full in the summary.
const PRINTED: usize = 10;

/// How often one kind of command ran and how it ended.
#[derive(Default, Clone, Copy)]
pub struct Count {
    pub runs: u64,
    pub ok: u64,
    pub busy: u64,
    pub not_found: u64,
    pub other: u64,
}

/// Why a failure is one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// An exit code (or signal, panic, hang) the soak does not allow.
    Unexpected,
    /// The vault did not show an acknowledged write.
    Lost,
}

pub struct Failure {
    pub at: Duration,
    /// None: the final check after all workers stopped.
    pub worker: Option<usize>,
    pub problem: Problem,
    pub command: String,
    pub status: String,
    pub detail: String,
    pub stderr: String,
}

#[derive(Default)]
pub struct Stats {
    pub counts: BTreeMap<&'static str, Count>,
    pub failures: Vec<Failure>,
    /// "command: status: message" (numbers in the message blanked out): how often it happened
    /// and when first.
    pub classes: BTreeMap<String, (u64, Duration)>,
    /// `WARN` lines vault printed on stderr of commands that succeeded: not failures, but a
    /// hint (e.g. a failed automatic compaction).
    pub warnings: BTreeMap<String, u64>,
    pub unexpected: u64,
    pub lost: u64,
    /// Reads whose expected answer came from acknowledged writes, and were compared.
    pub checked: u64,
    /// The first line of the final `vault verify`, or how it failed.
    pub final_verify: Option<String>,
    /// What `vault audit verify` said at the end.
    pub final_audit: Option<String>,
}

impl Stats {
    /// Counts one run of `label` by how it ended.
    pub fn count(&mut self, label: &'static str, o: &Outcome) {
        let c = self.counts.entry(label).or_default();
        c.runs += 1;
        match o.code {
            _ if o.hung || o.panicked() => c.other += 1,
            Some(0) => c.ok += 1,
            Some(4) => c.not_found += 1,
            Some(6) => c.busy += 1,
            _ => c.other += 1,
        }
        if o.code == Some(0) {
            for line in o.stderr.lines().filter(|l| l.contains("WARN")) {
                *self.warnings.entry(normalise(line)).or_default() += 1;
            }
        }
    }

    /// Records a failure of `command` (as typed, e.g. `vault get w1/k2`).
    pub fn fail(
        &mut self,
        problem: Problem,
        at: Duration,
        worker: Option<usize>,
        command: String,
        o: &Outcome,
        detail: String,
    ) {
        match problem {
            Problem::Unexpected => self.unexpected += 1,
            Problem::Lost => self.lost += 1,
        }
        let verb = command.split_whitespace().nth(1).unwrap_or("?");
        let class = match problem {
            Problem::Unexpected => {
                format!("{verb}: {}: {}", o.status(), normalise(&message(&o.stderr)))
            }
            Problem::Lost => format!("{verb}: LOST acknowledged write ({})", o.status()),
        };
        let e = self.classes.entry(class).or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.min(at);
        if self.failures.len() < KEPT {
            self.failures.push(Failure {
                at,
                worker,
                problem,
                command,
                status: o.status(),
                detail,
                stderr: o.stderr.trim().to_string(),
            });
        }
    }

    pub fn merge(&mut self, other: Stats) {
        for (k, c) in other.counts {
            let e = self.counts.entry(k).or_default();
            e.runs += c.runs;
            e.ok += c.ok;
            e.busy += c.busy;
            e.not_found += c.not_found;
            e.other += c.other;
        }
        for (k, (n, at)) in other.classes {
            let e = self.classes.entry(k).or_insert((0, at));
            e.0 += n;
            e.1 = e.1.min(at);
        }
        for (k, n) in other.warnings {
            *self.warnings.entry(k).or_default() += n;
        }
        self.failures.extend(other.failures);
        self.failures.sort_by_key(|f| f.at);
        self.failures.truncate(KEPT);
        self.unexpected += other.unexpected;
        self.lost += other.lost;
        self.checked += other.checked;
        self.final_verify = self.final_verify.take().or(other.final_verify);
        self.final_audit = self.final_audit.take().or(other.final_audit);
    }

    pub fn failed(&self) -> bool {
        self.unexpected > 0 || self.lost > 0
    }

    fn ok_of(&self, label: &str) -> (u64, u64) {
        self.counts.get(label).map_or((0, 0), |c| (c.ok, c.runs))
    }

    /// The summary of one filesystem's run.
    pub fn summary(&self, fs_line: &str, secs: f64, procs: usize, seed: u64) -> String {
        let mut s = String::new();
        let total: u64 = self.counts.values().map(|c| c.runs).sum();
        let _ = writeln!(s, "\n== soak concurrency: {fs_line}");
        let _ = writeln!(
            s,
            "   {secs:.1} s, {procs} processes, seed {seed:#x}; {total} vault commands ({:.0}/s)",
            total as f64 / secs.max(0.001)
        );
        let _ = writeln!(
            s,
            "   {:<26}{:>7}{:>7}{:>7}{:>11}{:>8}",
            "command", "runs", "ok", "busy", "not-found", "failed"
        );
        for (label, c) in &self.counts {
            let _ = writeln!(
                s,
                "   {label:<26}{:>7}{:>7}{:>7}{:>11}{:>8}",
                c.runs, c.ok, c.busy, c.not_found, c.other
            );
        }
        let (compactions, compact_runs) = self.ok_of("compact");
        let (rotations, rotate_runs) = self.ok_of("rotate-master-key");
        let _ = writeln!(
            s,
            "   compactions succeeded: {compactions} of {compact_runs}; rotations succeeded: {rotations} of {rotate_runs}"
        );
        if let Some(v) = &self.final_verify {
            let _ = writeln!(s, "   final verify: {v}");
        }
        if let Some(v) = &self.final_audit {
            let _ = writeln!(s, "   final audit verify: {v}");
        }
        let first = self.failures.first().map_or(String::new(), |f| {
            format!(" (first at {:.1} s)", f.at.as_secs_f64())
        });
        let _ = writeln!(
            s,
            "   acknowledged writes checked: {}; lost = {}; unexpected exit codes = {}{first}",
            self.checked, self.lost, self.unexpected
        );
        if !self.classes.is_empty() {
            let _ = writeln!(s, "   failures by kind (count, first seen):");
            let mut classes: Vec<_> = self.classes.iter().collect();
            classes.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
            for (class, (n, at)) in classes {
                let _ = writeln!(s, "     {n:>5} x {:>6.1} s  {class}", at.as_secs_f64());
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(
                s,
                "   warnings on stderr of successful commands (not failures):"
            );
            for (w, n) in &self.warnings {
                let _ = writeln!(s, "     {n:>5} x {w}");
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "   first failures:");
        }
        for f in self.failures.iter().take(PRINTED) {
            let who = f
                .worker
                .map_or("final check".into(), |w| format!("worker {w}"));
            let what = match f.problem {
                Problem::Unexpected => "unexpected",
                Problem::Lost => "LOST WRITE",
            };
            let _ = writeln!(
                s,
                "   [{:7.2} s] {who}: {} -> {} ({what}) {}",
                f.at.as_secs_f64(),
                f.command,
                f.status,
                f.detail
            );
            for line in f.stderr.lines().take(6) {
                let _ = writeln!(s, "       stderr: {line}");
            }
        }
        s
    }
}

/// vault's one-line error message (`vault: …`), else the first line of stderr.
fn message(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("vault: ") || l.contains("panicked"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("(no stderr)")
        .to_string()
}

/// Blanks out numbers (generations, offsets, pids in paths) so equal failures group together.
fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_number = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
        if out.len() > 200 {
            out.push('…');
            break;
        }
    }
    out
}
