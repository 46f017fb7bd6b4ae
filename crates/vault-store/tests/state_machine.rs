//! Property tests, on both backends. First, random sequences of operations against a plain
//! in-memory model: set (with and without check-and-set), get, get of old versions, rm,
//! undelete, destroy, compact, reopen (a fresh handle reading the storage back), passphrase
//! change and max-versions changes. Second, random sequences drawn from the shared list of
//! mutating operations (`vault_testkit::MutatingOp::ALL`, so a new operation joins here too):
//! each succeeds on a prepared vault, generations grow, and a fresh handle opens the vault with
//! the passphrases the operation leaves, sees exactly what the writing handle sees, and verifies
//! the whole log.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use vault_crypto::SecretBytes;
use vault_store::{Backend, Error, FileBackend, MemoryBackend, SetOptions, Vault, VaultOptions};

use ModelOp as Op;

#[derive(Default, Clone, Debug)]
struct Entry {
    versions: BTreeMap<u32, Vec<u8>>,
    latest: u32,
    deleted: bool,
}

#[derive(Debug)]
struct Model {
    secrets: BTreeMap<String, Entry>,
    max_versions: u32,
}

impl Model {
    fn prune(&mut self) {
        let max = self.max_versions as usize;
        for e in self.secrets.values_mut() {
            while e.versions.len() > max {
                e.versions.pop_first();
            }
        }
    }
}

fn name(n: u8) -> String {
    format!("secret/{n}")
}

fn run(ops: &[Op], backend: Arc<dyn Backend>, options: VaultOptions) -> Result<(), TestCaseError> {
    let mut passphrase = pass();
    let mut generation = 0u64;
    let mut v = Vault::create(backend.clone(), &passphrase, cheap_kdf(), options.clone()).unwrap();
    let mut m = Model {
        secrets: BTreeMap::new(),
        max_versions: vault_store::DEFAULT_MAX_VERSIONS,
    };
    for op in ops {
        match op {
            Op::Set {
                name: n,
                value,
                cas,
            } => {
                let e = m.secrets.get(&name(*n)).cloned().unwrap_or_default();
                let r = v.set(
                    &name(*n),
                    SecretBytes::from_slice(value),
                    SetOptions {
                        expected_version: *cas,
                        ..SetOptions::default()
                    },
                );
                match cas {
                    Some(c) if *c != e.latest => {
                        prop_assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
                    }
                    _ => {
                        let version = r.unwrap();
                        prop_assert_eq!(version, e.latest + 1);
                        let entry = m.secrets.entry(name(*n)).or_default();
                        entry.versions.insert(version, value.clone());
                        entry.latest = version;
                        entry.deleted = false;
                        m.prune();
                    }
                }
            }
            Op::Get { name: n } => {
                let r = v.get(&name(*n));
                match m.secrets.get(&name(*n)) {
                    Some(e) if !e.deleted => {
                        let s = r.unwrap();
                        prop_assert_eq!(s.version, e.latest);
                        prop_assert_eq!(s.value.expose_secret(), &e.versions[&e.latest][..]);
                    }
                    _ => prop_assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}"),
                }
            }
            Op::GetVersion { name: n, version } => {
                let r = v.get_version(&name(*n), *version);
                match m
                    .secrets
                    .get(&name(*n))
                    .filter(|e| !e.deleted)
                    .and_then(|e| e.versions.get(version))
                {
                    Some(val) => {
                        let got = r.unwrap();
                        prop_assert_eq!(got.value.expose_secret(), &val[..]);
                    }
                    None => prop_assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}"),
                }
            }
            Op::Rm { name: n } => {
                let r = v.delete(&name(*n));
                match m.secrets.get_mut(&name(*n)) {
                    Some(e) if !e.deleted => {
                        r.unwrap();
                        e.deleted = true;
                    }
                    _ => prop_assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}"),
                }
            }
            Op::Undelete { name: n } => {
                let r = v.undelete(&name(*n));
                match m.secrets.get_mut(&name(*n)) {
                    Some(e) if e.deleted => {
                        r.unwrap();
                        e.deleted = false;
                    }
                    Some(_) => prop_assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}"),
                    None => prop_assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}"),
                }
            }
            Op::Destroy { name: n } => {
                let r = v.destroy(&name(*n));
                if m.secrets.remove(&name(*n)).is_some() {
                    r.unwrap();
                } else {
                    prop_assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
                }
            }
            Op::MaxVersions(n) => {
                v.set_max_versions(*n).unwrap();
                m.max_versions = *n;
                m.prune();
            }
            Op::Compact => v.compact().unwrap(),
            Op::Reopen => {
                drop(v);
                v = Vault::open(backend.clone(), &passphrase, options.clone()).unwrap();
            }
            Op::ChangePassphrase => {
                let new = SecretBytes::from_slice(format!("pass {generation}").as_bytes());
                v.change_passphrase(&passphrase, &new, None).unwrap();
                passphrase = new;
            }
        }
        // Generations only grow.
        prop_assert!(v.generation() >= generation);
        generation = v.generation();
        // The listing always matches the model.
        let listed: Vec<(String, u32, usize, bool)> = v
            .list(true)
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.latest, s.versions, s.deleted))
            .collect();
        let expected: Vec<(String, u32, usize, bool)> = m
            .secrets
            .iter()
            .map(|(n, e)| (n.clone(), e.latest, e.versions.len(), e.deleted))
            .collect();
        prop_assert_eq!(listed, expected);
    }
    // Finally a fresh handle sees the same, and the whole log verifies.
    let fresh = Vault::open(backend, &passphrase, options).unwrap();
    fresh.verify().unwrap();
    prop_assert_eq!(fresh.list(true).unwrap().len(), m.secrets.len());
    Ok(())
}

/// A listed secret: name, latest version, versions kept, deleted.
type Listed = (String, u32, usize, bool);

/// What a handle shows of a vault: secrets with versions and deletion, and key versions.
fn contents(v: &Vault) -> (Vec<Listed>, Vec<String>) {
    let secrets = v
        .list(true)
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.latest, s.versions, s.deleted))
        .collect();
    let keys = v
        .key_names()
        .unwrap()
        .into_iter()
        .flat_map(|k| {
            v.key_versions(&k)
                .unwrap()
                .into_iter()
                .map(move |i| format!("{k} {i:?}"))
        })
        .collect();
    (secrets, keys)
}

fn run_mutating(
    ops: &[MutatingOp],
    backend: Arc<dyn Backend>,
    options: VaultOptions,
) -> Result<(), TestCaseError> {
    let v = Vault::create(backend.clone(), &pass(), cheap_kdf(), options.clone()).unwrap();
    for op in ops {
        op.prepare(&v);
        let before = v.generation();
        op.run(&v)
            .map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        // A compaction rewrites the log at the same generation, a checkpoint writes the index
        // only; everything else commits.
        if !op.commits() {
            prop_assert_eq!(v.generation(), before);
        } else {
            prop_assert!(v.generation() > before, "{:?} committed nothing", op);
        }
        for p in op.passphrases_after(true) {
            let fresh = Vault::open(
                backend.clone(),
                &SecretBytes::from_slice(p),
                options.clone(),
            )
            .map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
            prop_assert_eq!(fresh.generation(), v.generation(), "after {:?}", op);
            prop_assert_eq!(contents(&fresh), contents(&v), "after {:?}", op);
            fresh.verify().unwrap();
        }
        MutatingOp::settle(&v);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mutating_ops_in_any_order_keep_the_vault_whole_in_memory(
        ops in prop::collection::vec(mutating_op(), 1..12)
    ) {
        run_mutating(&ops, Arc::new(MemoryBackend::new()), VaultOptions::default())?;
    }

    #[test]
    fn mutating_ops_in_any_order_keep_the_vault_whole_on_files(
        ops in prop::collection::vec(mutating_op(), 1..12)
    ) {
        let d = TestDir::new();
        run_mutating(&ops, Arc::new(FileBackend::new(d.vault_dir())), d.options())?;
    }

    #[test]
    fn memory_backend_matches_the_model(ops in prop::collection::vec(model_op(), 1..60)) {
        run(&ops, Arc::new(MemoryBackend::new()), VaultOptions::default())?;
    }

    #[test]
    fn file_backend_matches_the_model(ops in prop::collection::vec(model_op(), 1..60)) {
        let d = TestDir::new();
        run(&ops, Arc::new(FileBackend::new(d.vault_dir())), d.options())?;
    }
}

/// The same state machine against PostgreSQL (a server of the test binary's own; a fresh vault
/// per case), with fewer cases: each case makes a schema on a real server.
#[cfg(feature = "postgres")]
mod pg {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use vault_store::{PostgresBackend, PostgresLocation};
    use vault_testkit::PgServer;

    fn server() -> Option<&'static PgServer> {
        static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
        SERVER
            .get_or_init(|| match PgServer::start() {
                Ok(s) => Some(s),
                Err(why) => {
                    eprintln!("postgres backend not tested: {why}");
                    None
                }
            })
            .as_ref()
    }

    fn backend(server: &PgServer) -> Arc<dyn Backend> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sm{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Arc::new(PostgresBackend::new(
            PostgresLocation::parse(&server.location(&name)).unwrap(),
        ))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn postgres_backend_matches_the_model(ops in prop::collection::vec(model_op(), 1..60)) {
            let Some(s) = server() else { return Ok(()) };
            let d = TestDir::new();
            run(&ops, backend(s), d.options())?;
        }

        #[test]
        fn mutating_ops_in_any_order_keep_the_vault_whole_in_postgres(
            ops in prop::collection::vec(mutating_op(), 1..12)
        ) {
            let Some(s) = server() else { return Ok(()) };
            let d = TestDir::new();
            run_mutating(&ops, backend(s), d.options())?;
        }
    }
}
