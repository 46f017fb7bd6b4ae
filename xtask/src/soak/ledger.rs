//! What one worker knows must be in the vault. Worker `w` is the only writer of the names
//! `w<w>/k0..` and runs its commands one at a time, so after an acknowledged write (exit 0) its
//! next read of that name must show exactly that write, whatever the other processes did
//! meanwhile: anything else is a lost acknowledged write.

/// Names per worker: few enough that names are rewritten, deleted and restored often.
pub const NAMES: usize = 9;

/// The state of one name as far as acknowledged writes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Never set, or destroyed: reads exit 4.
    Absent,
    /// Set (or restored) with this value; `version` is the latest version number.
    Live { value: String, version: u32 },
    /// Soft-deleted: reads exit 4; `undelete` brings `value` back.
    Deleted { value: String, version: u32 },
    /// A write to it failed in a way that leaves its effect unknown, or a read contradicted the
    /// ledger (either is already recorded): reads accept any answer until the next acknowledged
    /// `set` or `destroy`, so one loss is not reported again at every later read.
    Unknown,
}

/// What a read of a name must return.
pub enum Expect<'a> {
    Value(&'a str),
    NotFound,
    /// Unknown: accept either.
    Either,
}

pub struct Ledger {
    worker: usize,
    entries: Vec<Entry>,
    /// Names with at least one acknowledged write. Unlike `entries`, never forgotten: if the
    /// vault ends up unreadable, those writes are lost even when a later failed write made
    /// the exact state unknown.
    acked: Vec<bool>,
}

impl Ledger {
    pub fn new(worker: usize) -> Ledger {
        Ledger {
            worker,
            entries: vec![Entry::Absent; NAMES],
            acked: vec![false; NAMES],
        }
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    pub fn name(worker: usize, k: usize) -> String {
        format!("w{worker}/k{k}")
    }

    pub fn own_name(&self, k: usize) -> String {
        Self::name(self.worker, k)
    }

    pub fn entry(&self, k: usize) -> &Entry {
        self.entries.get(k).unwrap_or(&Entry::Unknown)
    }

    fn set_entry(&mut self, k: usize, e: Entry) {
        if let Some(slot) = self.entries.get_mut(k) {
            *slot = e;
        }
    }

    /// Records the state an acknowledged write left.
    fn put(&mut self, k: usize, e: Entry) {
        self.set_entry(k, e);
        if let Some(a) = self.acked.get_mut(k) {
            *a = true;
        }
    }

    /// Whether name `k` ever had an acknowledged write.
    pub fn acked(&self, k: usize) -> bool {
        self.acked.get(k).copied().unwrap_or(false)
    }

    /// Indices of names in a state `pred` accepts.
    pub fn matching(&self, pred: impl Fn(&Entry) -> bool) -> Vec<usize> {
        (0..NAMES).filter(|&k| pred(self.entry(k))).collect()
    }

    pub fn expect(&self, k: usize) -> Expect<'_> {
        match self.entry(k) {
            Entry::Live { value, .. } => Expect::Value(value),
            Entry::Absent | Entry::Deleted { .. } => Expect::NotFound,
            Entry::Unknown => Expect::Either,
        }
    }

    /// The version the latest acknowledged write left (0: none), if known.
    pub fn version(&self, k: usize) -> Option<u32> {
        match self.entry(k) {
            Entry::Absent => Some(0),
            Entry::Live { version, .. } | Entry::Deleted { version, .. } => Some(*version),
            Entry::Unknown => None,
        }
    }

    /// Whether the name shows in `list` (None: unknown).
    pub fn listed(&self, k: usize) -> Option<bool> {
        match self.entry(k) {
            Entry::Live { .. } => Some(true),
            Entry::Absent | Entry::Deleted { .. } => Some(false),
            Entry::Unknown => None,
        }
    }

    /// Whether the name shows in `list --all` as deleted (None: unknown).
    pub fn listed_deleted(&self, k: usize) -> Option<bool> {
        match self.entry(k) {
            Entry::Deleted { .. } => Some(true),
            Entry::Absent | Entry::Live { .. } => Some(false),
            Entry::Unknown => None,
        }
    }

    pub fn set_acked(&mut self, k: usize, value: String, version: u32) {
        self.put(k, Entry::Live { value, version });
    }

    pub fn rm_acked(&mut self, k: usize) {
        let e = match self.entry(k).clone() {
            Entry::Live { value, version } => Entry::Deleted { value, version },
            _ => Entry::Unknown,
        };
        self.put(k, e);
    }

    pub fn undelete_acked(&mut self, k: usize) {
        let e = match self.entry(k).clone() {
            Entry::Deleted { value, version } => Entry::Live { value, version },
            _ => Entry::Unknown,
        };
        self.put(k, e);
    }

    pub fn destroy_acked(&mut self, k: usize) {
        self.put(k, Entry::Absent);
    }

    /// A write whose outcome is unknown, or a read that contradicted the ledger (counted once).
    pub fn forget(&mut self, k: usize) {
        self.set_entry(k, Entry::Unknown);
    }

    /// `destroy` found no such name: whatever the ledger knew, it is absent now.
    pub fn observed_absent(&mut self, k: usize) {
        self.set_entry(k, Entry::Absent);
    }
}
