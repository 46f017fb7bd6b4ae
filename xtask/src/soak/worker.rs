//! One soak worker: a thread that runs `vault` commands one after another until the deadline,
//! picking each from a weighted mix of every command, and checks each result against its ledger.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::child::{Input, NewPassphrase, Outcome, VaultCmd};
use super::ledger::{Entry, Expect, Ledger, NAMES};
use super::report::{Problem, Stats};
use super::rng::Rng;

/// What all workers share.
pub struct Shared<'a> {
    pub vault: &'a VaultCmd,
    pub procs: usize,
    pub start: Instant,
    pub deadline: Instant,
    /// Commands run and failures found so far, for the progress line.
    pub commands: AtomicU64,
    pub failures: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    SetLate,
    SetCas,
    Get,
    GetOther,
    List,
    History,
    Rm,
    Undelete,
    Destroy,
    Verify,
    Compact,
    Upgrade,
    Rotate,
    ChangePassphrase,
    AddPassphrase,
    RemovePassphrase,
    MaxVersions,
    KeyEncrypt,
    KeyDecrypt,
    KeyRotate,
    AuditPolicy,
}

/// The mix, in parts per thousand. Mostly writes and reads of the worker's own names (what the
/// ledger can check); compaction and rotation 5 % each, so a run has dozens of both racing
/// everything else; the key-slot commands rarer, as each rewrites the header.
const MIX: [(Op, u64); 22] = [
    (Op::Set, 170),
    (Op::SetLate, 120),
    (Op::SetCas, 60),
    (Op::Get, 200),
    (Op::GetOther, 40),
    (Op::List, 50),
    (Op::History, 40),
    (Op::Rm, 60),
    (Op::Undelete, 40),
    (Op::Destroy, 15),
    (Op::Verify, 30),
    (Op::Compact, 50),
    (Op::Upgrade, 20),
    (Op::Rotate, 50),
    (Op::ChangePassphrase, 20),
    (Op::AddPassphrase, 15),
    (Op::RemovePassphrase, 15),
    (Op::MaxVersions, 5),
    // Managed keys: each worker encrypts with its own key, rotates it, and decrypts what it
    // encrypted earlier, through every compaction and master-key rotation of the others.
    (Op::KeyEncrypt, 40),
    (Op::KeyDecrypt, 40),
    (Op::KeyRotate, 15),
    // The audit trail's policy: each change seals the trail's file and starts the next, and
    // the 1-2 MiB size limits (set at init too) make files fill and retention remove the
    // oldest throughout the run.
    (Op::AuditPolicy, 10),
];

/// How many acknowledged ciphertexts a worker keeps to decrypt again.
const TOKENS_KEPT: usize = 64;

/// The longest a late `set` keeps its stdin open before writing the value.
const MAX_STDIN_DELAY_MS: u64 = 200;

pub struct Worker<'a> {
    sh: &'a Shared<'a>,
    rng: Rng,
    ledger: Ledger,
    stats: Stats,
    seq: u64,
    /// Whether this worker's key exists (its `key create` was acknowledged).
    key_made: bool,
    /// Acknowledged ciphertexts of this worker's key, with their plaintexts.
    tokens: Vec<(Vec<u8>, String)>,
}

impl<'a> Worker<'a> {
    /// Runs worker `id` until the deadline; returns what it counted and its ledger.
    pub fn run(id: usize, sh: &'a Shared<'a>, seed: u64) -> (Stats, Ledger) {
        let mut w = Worker {
            sh,
            rng: Rng::new(seed.wrapping_add(id as u64)),
            ledger: Ledger::new(id),
            stats: Stats::default(),
            seq: 0,
            key_made: false,
            tokens: Vec::new(),
        };
        while Instant::now() < sh.deadline {
            let op = w.pick();
            w.step(op);
        }
        (w.stats, w.ledger)
    }

    fn pick(&mut self) -> Op {
        let total: u64 = MIX.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.below(total);
        for (op, weight) in MIX {
            if r < weight {
                return op;
            }
            r -= weight;
        }
        Op::Get
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Set => self.set(op, "set"),
            Op::SetLate => self.set(op, "set (late stdin)"),
            Op::SetCas => self.set(op, "set --expect-version"),
            Op::Get => self.get_own(),
            Op::GetOther => self.get_other(),
            Op::List => self.list(),
            Op::History => self.history(),
            Op::Rm => self.rm(),
            Op::Undelete => self.undelete(),
            Op::Destroy => self.destroy(),
            Op::Verify => {
                let o = self.exec("verify", &["verify"], Input::Nothing, NewPassphrase::Same);
                if let Some(detail) = check_verify(&o) {
                    self.fail(Problem::Unexpected, &["verify"], &o, detail);
                }
            }
            Op::Compact => self.global("compact", &["compact"], NewPassphrase::Same),
            // Writes the index (a checkpoint) while others commit, compact and rotate.
            Op::Upgrade => self.global("upgrade", &["upgrade"], NewPassphrase::Same),
            Op::Rotate => self.global(
                "rotate-master-key",
                &["rotate-master-key", "--drop-other-slots"],
                NewPassphrase::Same,
            ),
            Op::ChangePassphrase => {
                // The new passphrase is the same file: the vault stays openable by everyone,
                // but the slot is rewritten under a fresh salt while others open it.
                self.global(
                    "change-passphrase",
                    &["change-passphrase"],
                    NewPassphrase::Same,
                )
            }
            Op::AddPassphrase => {
                self.add_passphrase();
            }
            Op::RemovePassphrase => self.remove_passphrase(),
            Op::MaxVersions => {
                let n = (1 + self.rng.below(20)).to_string();
                self.global("max-versions", &["max-versions", &n], NewPassphrase::Same)
            }
            Op::KeyEncrypt => self.key_encrypt(),
            Op::KeyDecrypt => self.key_decrypt(),
            Op::AuditPolicy => {
                let names = if self.rng.chance(500) {
                    "clear"
                } else {
                    "hashed"
                };
                let size = if self.rng.chance(500) { "1MiB" } else { "2MiB" };
                let args = ["audit", "policy", "--names", names, "--max-size", size];
                self.global("audit policy", &args, NewPassphrase::Same)
            }
            Op::KeyRotate => {
                if self.make_key() {
                    let name = self.key_name();
                    self.global("key rotate", &["key", "rotate", &name], NewPassphrase::Same);
                }
            }
        }
    }

    fn key_name(&self) -> String {
        format!("w{}-key", self.ledger.worker())
    }

    /// Creates this worker's key if it has not yet; whether it exists.
    fn make_key(&mut self) -> bool {
        if self.key_made {
            return true;
        }
        let name = self.key_name();
        let args = ["key", "create", name.as_str()];
        let o = self.exec("key create", &args, Input::Nothing, NewPassphrase::Same);
        // 7: an earlier create was applied though its answer was lost (never here: no kills).
        if o.exited_with(&[0, 7]) {
            self.key_made = true;
        } else if !o.is(6) {
            self.unexpected(&args, &o);
        }
        self.key_made
    }

    fn key_encrypt(&mut self) {
        if !self.make_key() {
            return;
        }
        self.seq += 1;
        let plain = format!(
            "w{}-plain-{}-{:016x}",
            self.ledger.worker(),
            self.seq,
            self.rng.next_u64()
        );
        let name = self.key_name();
        let ad = format!("w{}", self.ledger.worker());
        let args = ["key", "encrypt", name.as_str(), "--ad", ad.as_str()];
        let o = self.exec(
            "key encrypt",
            &args,
            Input::Now(plain.clone().into_bytes()),
            NewPassphrase::Same,
        );
        if o.is(6) {
            return;
        }
        if !o.is(0) || !o.stdout.starts_with(b"vault:v") {
            return self.unexpected(&args, &o);
        }
        if self.tokens.len() >= TOKENS_KEPT {
            let i = self.rng.index(self.tokens.len());
            self.tokens.swap_remove(i);
        }
        self.tokens.push((o.stdout, plain));
    }

    fn key_decrypt(&mut self) {
        if self.tokens.is_empty() {
            return self.key_encrypt();
        }
        let i = self.rng.index(self.tokens.len());
        let Some((token, plain)) = self.tokens.get(i).cloned() else {
            return;
        };
        let name = self.key_name();
        let ad = format!("w{}", self.ledger.worker());
        let args = ["key", "decrypt", name.as_str(), "--ad", ad.as_str()];
        let o = self.exec("key decrypt", &args, Input::Now(token), NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        self.stats.checked += 1;
        if !o.is(0) || o.stdout != plain.as_bytes() {
            self.lost(
                &args,
                &o,
                format!("an acknowledged ciphertext of {plain:?} does not decrypt to it"),
            );
            self.tokens.swap_remove(i);
        }
    }

    fn exec(
        &mut self,
        label: &'static str,
        args: &[&str],
        input: Input,
        new: NewPassphrase,
    ) -> Outcome {
        let o = self.sh.vault.run(args, input, new);
        self.sh.commands.fetch_add(1, Ordering::Relaxed);
        self.stats.count(label, &o);
        o
    }

    fn fail(&mut self, problem: Problem, args: &[&str], o: &Outcome, detail: impl Into<String>) {
        let at = self.sh.start.elapsed();
        let command = format!("vault {}", args.join(" "));
        let worker = Some(self.ledger.worker());
        self.sh.failures.fetch_add(1, Ordering::Relaxed);
        self.stats
            .fail(problem, at, worker, command, o, detail.into());
    }

    fn unexpected(&mut self, args: &[&str], o: &Outcome) {
        self.fail(Problem::Unexpected, args, o, "");
    }

    fn lost(&mut self, args: &[&str], o: &Outcome, detail: impl Into<String>) {
        self.fail(Problem::Lost, args, o, detail);
    }

    /// A command with no ledger effect: it must exit 0 or 6 (busy).
    fn global(&mut self, label: &'static str, args: &[&str], new: NewPassphrase) {
        let o = self.exec(label, args, Input::Nothing, new);
        if !o.exited_with(&[0, 6]) {
            self.unexpected(args, &o);
        }
    }

    /// A fresh value, unique in the run; a third of them padded so frames vary in size (a
    /// reader that resumes at a stale offset then lands mid-frame rather than on a boundary).
    fn new_value(&mut self, k: usize) -> String {
        self.seq += 1;
        let mut v = format!(
            "w{}-k{k}-seq{}-{:016x}",
            self.ledger.worker(),
            self.seq,
            self.rng.next_u64()
        );
        if self.rng.chance(333) {
            let pad = self.rng.below(1500) as usize;
            v.push('-');
            v.extend(std::iter::repeat_n('p', pad));
        }
        v
    }

    fn set(&mut self, op: Op, label: &'static str) {
        let k = self.rng.index(NAMES);
        let name = self.ledger.own_name(k);
        let value = self.new_value(k);
        let before = self.ledger.version(k);
        let expected = match (op, before) {
            (Op::SetCas, Some(v)) => v.to_string(),
            _ => String::new(),
        };
        let mut args = vec!["set", name.as_str()];
        if !expected.is_empty() {
            args.extend(["--expect-version", &expected]);
        }
        let bytes = value.clone().into_bytes();
        let input = if op == Op::SetLate {
            Input::Late(
                Duration::from_millis(self.rng.below(MAX_STDIN_DELAY_MS + 1)),
                bytes,
            )
        } else {
            Input::Now(bytes)
        };
        let o = self.exec(label, &args, input, NewPassphrase::Same);
        if o.is(6) {
            return; // busy: not applied, the ledger stands
        }
        if o.is(7) && !expected.is_empty() {
            // Only this worker writes the name, so the vault must be at the version of its
            // last acknowledged write.
            self.lost(
                &args,
                &o,
                format!("check-and-set conflict: the ledger's acknowledged version is {expected}"),
            );
            self.ledger.forget(k);
            return;
        }
        if !o.is(0) {
            self.unexpected(&args, &o);
            self.ledger.forget(k);
            return;
        }
        let Some(stored) = stored_version(&o.stderr) else {
            self.fail(
                Problem::Unexpected,
                &args,
                &o,
                "exit 0 without `stored NAME version N` on stderr",
            );
            self.ledger.forget(k);
            return;
        };
        if let Some(before) = before {
            self.stats.checked += 1;
            if stored != before + 1 {
                self.lost(
                    &args,
                    &o,
                    format!(
                        "stored version {stored}, but the last acknowledged write left version {before}"
                    ),
                );
            }
        }
        self.ledger.set_acked(k, value, stored);
    }

    fn get_own(&mut self) {
        let k = self.rng.index(NAMES);
        let name = self.ledger.own_name(k);
        let args = ["get", name.as_str()];
        let o = self.exec("get", &args, Input::Nothing, NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        if let Some(detail) = check_get(&mut self.stats, &self.ledger, k, &o) {
            match detail {
                GetVerdict::Lost(d) => {
                    self.lost(&args, &o, d);
                    self.ledger.forget(k);
                }
                GetVerdict::Unexpected => self.unexpected(&args, &o),
            }
        }
    }

    fn get_other(&mut self) {
        if self.sh.procs < 2 {
            return self.get_own();
        }
        // Another worker's name: its value changes under us, so only the exit code is checked.
        let mut other = self.rng.index(self.sh.procs - 1);
        if other >= self.ledger.worker() {
            other += 1;
        }
        let name = Ledger::name(other, self.rng.index(NAMES));
        let args = ["get", name.as_str()];
        let o = self.exec(
            "get (other worker)",
            &args,
            Input::Nothing,
            NewPassphrase::Same,
        );
        if !o.exited_with(&[0, 4, 6]) {
            self.unexpected(&args, &o);
        }
    }

    fn list(&mut self) {
        let all = self.rng.chance(500);
        let args: &[&str] = if all { &["list", "--all"] } else { &["list"] };
        let label = if all { "list --all" } else { "list" };
        let o = self.exec(label, args, Input::Nothing, NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        if !o.is(0) {
            return self.unexpected(args, &o);
        }
        let (checked, wrong) = check_list(&self.ledger, &o.stdout_text(), all);
        self.stats.checked += checked;
        for (k, detail) in wrong {
            self.lost(args, &o, detail);
            self.ledger.forget(k);
        }
    }

    fn history(&mut self) {
        let k = self.rng.index(NAMES);
        let name = self.ledger.own_name(k);
        let args = ["history", name.as_str()];
        let o = self.exec("history", &args, Input::Nothing, NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        if !o.exited_with(&[0, 4]) {
            return self.unexpected(&args, &o);
        }
        let Some(version) = self.ledger.version(k) else {
            return;
        };
        self.stats.checked += 1;
        // One line per kept version, oldest first: the last is the latest version.
        let latest = o
            .stdout_text()
            .lines()
            .last()
            .and_then(|l| l.split('\t').next()?.parse::<u32>().ok());
        let found = if o.is(4) { None } else { latest };
        let wanted = (version > 0).then_some(version);
        if found != wanted {
            self.lost(
                &args,
                &o,
                format!("latest version {found:?}, the ledger's acknowledged version {wanted:?}"),
            );
            self.ledger.forget(k);
        }
    }

    fn rm(&mut self) {
        let live = self.ledger.matching(|e| matches!(e, Entry::Live { .. }));
        let k = match live.get(self.rng.index(live.len())) {
            Some(&k) if self.rng.chance(850) => k,
            _ => self.rng.index(NAMES),
        };
        let name = self.ledger.own_name(k);
        let args = ["rm", name.as_str()];
        let o = self.exec("rm", &args, Input::Nothing, NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        if !o.exited_with(&[0, 4]) {
            self.unexpected(&args, &o);
            return self.ledger.forget(k);
        }
        match self.ledger.entry(k).clone() {
            // Deleted or never there, nobody can tell: it stays unknown.
            Entry::Unknown => {}
            Entry::Live { .. } if o.is(0) => self.ledger.rm_acked(k),
            Entry::Absent | Entry::Deleted { .. } if o.is(4) => self.stats.checked += 1,
            state => {
                let detail = if o.is(4) {
                    "not found, but the ledger has it live"
                } else if state == Entry::Absent {
                    "deleted it, but an acknowledged destroy removed it"
                } else {
                    "deleted it, but an acknowledged rm had deleted it already"
                };
                self.stats.checked += 1;
                self.lost(&args, &o, detail);
                self.ledger.forget(k);
            }
        }
    }

    fn undelete(&mut self) {
        let deleted = self.ledger.matching(|e| matches!(e, Entry::Deleted { .. }));
        let absent = self.ledger.matching(|e| *e == Entry::Absent);
        let pool = if deleted.is_empty() { absent } else { deleted };
        let Some(&k) = pool.get(self.rng.index(pool.len())) else {
            return self.set(Op::Set, "set");
        };
        let name = self.ledger.own_name(k);
        let args = ["undelete", name.as_str()];
        let o = self.exec("undelete", &args, Input::Nothing, NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        let was_deleted = matches!(self.ledger.entry(k), Entry::Deleted { .. });
        let not_deleted = o.is(2) && o.stderr.contains("is not deleted");
        if was_deleted && o.is(0) {
            self.ledger.undelete_acked(k);
        } else if !was_deleted && o.is(4) {
            self.stats.checked += 1;
        } else if o.exited_with(&[0, 4]) || not_deleted {
            self.stats.checked += 1;
            let detail = if was_deleted {
                "the ledger has it deleted (an acknowledged rm was lost)"
            } else {
                "the ledger has it destroyed or never set"
            };
            self.lost(&args, &o, detail);
            self.ledger.forget(k);
        } else {
            self.unexpected(&args, &o);
            self.ledger.forget(k);
        }
    }

    fn destroy(&mut self) {
        let k = self.rng.index(NAMES);
        let name = self.ledger.own_name(k);
        let args = ["destroy", name.as_str(), "--yes"];
        let o = self.exec("destroy", &args, Input::Nothing, NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        if !o.exited_with(&[0, 4]) {
            self.unexpected(&args, &o);
            return self.ledger.forget(k);
        }
        let exists = match self.ledger.entry(k) {
            Entry::Live { .. } | Entry::Deleted { .. } => Some(true),
            Entry::Absent => Some(false),
            Entry::Unknown => None,
        };
        if let Some(exists) = exists {
            self.stats.checked += 1;
            if exists != o.is(0) {
                self.lost(&args, &o, format!("the ledger says it exists: {exists}"));
            }
        }
        // Either way the name is gone now, which resolves an unknown state too.
        if o.is(0) {
            self.ledger.destroy_acked(k);
        } else {
            self.ledger.observed_absent(k);
        }
    }

    /// Adds a slot for the second passphrase; returns its id when one was added.
    fn add_passphrase(&mut self) -> Option<String> {
        let args = ["add-passphrase"];
        let o = self.exec(
            "add-passphrase",
            &args,
            Input::Nothing,
            NewPassphrase::Second,
        );
        // All 8 slots taken (adds racing between rotations) is a documented refusal.
        let full = o.is(2) && o.stderr.contains("key slots are in use");
        if !o.exited_with(&[0, 6]) && !full {
            self.unexpected(&args, &o);
        }
        let added = o
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("added key slot "));
        added.filter(|_| o.is(0)).map(str::to_string)
    }

    /// Removes a slot other than the one our passphrase opens, found with `vault slots` (or
    /// added first: rotations drop extra slots, so there often is none). It may be gone by the
    /// time we remove it (another worker or a rotation removed it): exit 4 is fine then.
    fn remove_passphrase(&mut self) {
        let o = self.exec("slots", &["slots"], Input::Nothing, NewPassphrase::Same);
        if o.is(6) {
            return;
        }
        if !o.is(0) {
            return self.unexpected(&["slots"], &o);
        }
        let removable: Vec<String> = o
            .stdout_text()
            .lines()
            .filter(|l| !l.contains("(unlocked with)"))
            .filter_map(|l| l.split('\t').next())
            .filter(|id| id.parse::<u8>().is_ok())
            .map(str::to_string)
            .collect();
        let id = match removable.get(self.rng.index(removable.len())) {
            Some(id) => id.clone(),
            None => match self.add_passphrase() {
                Some(id) => id,
                None => return,
            },
        };
        let args = ["remove-passphrase", id.as_str(), "--yes"];
        let o = self.exec(
            "remove-passphrase",
            &args,
            Input::Nothing,
            NewPassphrase::Same,
        );
        if !o.exited_with(&[0, 4, 6]) {
            self.unexpected(&args, &o);
        }
    }
}

/// How a `get` contradicted the ledger.
pub enum GetVerdict {
    Lost(String),
    Unexpected,
}

/// Checks `vault get` of own name `k` (not busy) against the ledger; None when it agrees.
pub fn check_get(stats: &mut Stats, ledger: &Ledger, k: usize, o: &Outcome) -> Option<GetVerdict> {
    if !o.exited_with(&[0, 4]) {
        return Some(GetVerdict::Unexpected);
    }
    let got = o.is(0).then(|| o.stdout_text());
    let detail = match (ledger.expect(k), got) {
        (Expect::Either, _) => return None,
        (Expect::Value(want), Some(got)) if got == want => None,
        (Expect::NotFound, None) => None,
        (Expect::Value(want), None) => Some(format!(
            "not found, the last acknowledged write set {}",
            short(want)
        )),
        (Expect::Value(want), Some(got)) => Some(format!(
            "read {}, the last acknowledged write set {}",
            short(&got),
            short(want)
        )),
        (Expect::NotFound, Some(got)) => Some(format!(
            "read {}, but an acknowledged rm or destroy removed it",
            short(&got)
        )),
    };
    stats.checked += 1;
    detail.map(GetVerdict::Lost)
}

/// Compares worker-owned names in `list` (or `list --all`) output with the ledger; returns how
/// many names it compared and the names that disagree.
pub fn check_list(ledger: &Ledger, stdout: &str, all: bool) -> (u64, Vec<(usize, String)>) {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for k in 0..NAMES {
        let name = ledger.own_name(k);
        let live = lines.contains(&name.as_str());
        let deleted = lines.contains(&format!("{name}\t(deleted)").as_str());
        let (want_live, want_deleted) = (ledger.listed(k), ledger.listed_deleted(k));
        let (Some(want_live), Some(want_deleted)) = (want_live, want_deleted) else {
            continue;
        };
        checked += 1;
        let ok = live == want_live && (!all || deleted == want_deleted);
        if !ok {
            wrong.push((
                k,
                format!(
                    "{name}: listed live {live}, deleted {deleted}; the ledger: live {want_live}, deleted {want_deleted}"
                ),
            ));
        }
    }
    (checked, wrong)
}

/// `vault verify` must exit 0 and say ok (or 6 when busy); Some(detail) when it did not.
pub fn check_verify(o: &Outcome) -> Option<String> {
    if o.is(6) || (o.is(0) && o.stdout_text().starts_with("ok")) {
        None
    } else if o.is(0) {
        Some("exit 0 without `ok`".into())
    } else {
        Some(String::new())
    }
}

/// The version in `stored NAME version N`, which `vault set` prints on success.
fn stored_version(stderr: &str) -> Option<u32> {
    stderr.lines().find_map(|l| {
        l.strip_prefix("stored ")?
            .rsplit_once(" version ")?
            .1
            .parse()
            .ok()
    })
}

/// A value shortened for a message.
fn short(v: &str) -> String {
    match v.char_indices().nth(40) {
        Some((i, _)) => format!("{:?}… ({} bytes)", v.get(..i).unwrap_or(v), v.len()),
        None => format!("{v:?}"),
    }
}
