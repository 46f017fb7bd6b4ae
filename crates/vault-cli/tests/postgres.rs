//! `vault --vault postgres://…` end to end against a real server (started by the test): init,
//! set, get, list, history, rm, compact, rotate-master-key and verify; two processes writing at
//! once; and what the database holds, read raw: no name, value or passphrase appears in it.
#![cfg(feature = "postgres")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::ffi::OsStr;
use std::process::Output;

use common::*;
use vault_testkit::PgServer;

fn server() -> Option<PgServer> {
    match PgServer::start() {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!("skipped: no PostgreSQL server here: {why}");
            None
        }
    }
}

/// The location of vault `name` on `pg`.
fn url(pg: &PgServer, name: &str) -> String {
    format!(
        "postgres://vault@localhost/postgres?host={}&port=5432&vault={name}",
        pg.socket_dir().display()
    )
}

/// `vault init` with cheap key derivation.
const CHEAP_INIT: [&str; 7] = [
    "init",
    "--kdf-memory-mib",
    "1",
    "--kdf-iterations",
    "1",
    "--kdf-parallelism",
    "1",
];

/// `vault init` at `url` with cheap key derivation.
fn init(e: &Env, url: &str) {
    let o = e.run_with(&CHEAP_INIT, None, &[("VAULT_DIR", OsStr::new(url))]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// A passphrase file for `who` (owner-only), holding "`who`'s passphrase".
fn pass_file(e: &Env, who: &str) -> std::path::PathBuf {
    let p = e.path(&format!("{who}.pass"));
    std::fs::write(&p, format!("{who}'s passphrase")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    p
}

/// Runs `vault ARGS` on `url` as client `who`: a state directory of its own (its own rollback
/// record and audit anchor), as on another machine.
fn as_client(e: &Env, url: &str, who: &str, args: &[&str], input: Option<&[u8]>) -> Output {
    let state = e.path(&format!("state-{who}"));
    e.run_with(
        args,
        input,
        &[
            ("VAULT_DIR", OsStr::new(url)),
            ("VAULT_STATE_DIR", state.as_os_str()),
        ],
    )
}

/// Starts `vault ARGS` on `url` with `input` on its stdin (not waited for). A command that ends
/// before it reads its input (one that cannot reach the server) is not an error here.
fn start(e: &Env, url: &str, args: &[&str], input: &[u8]) -> std::process::Child {
    let mut c = e.command(args);
    c.env("VAULT_DIR", url);
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(input);
    child
}

#[test]
fn a_vault_in_postgres_end_to_end() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let url = url(&pg, "team");
    let at = [("VAULT_DIR", OsStr::new(&url))];
    let ok = |args: &[&str], input: Option<&[u8]>| {
        let o = e.run_with(args, input, &at);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        o.stdout
    };
    init(&e, &url);
    let o = e.run_with(&["init"], None, &at);
    assert_ne!(code(&o), 0, "a second init");
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    ok(&["set", "db/password"], Some(b"hunter2-in-postgres"));
    ok(&["set", "db/password"], Some(b"hunter3-in-postgres"));
    ok(
        &["set", "api/token", "--tag", "env=prod"],
        Some(b"tok-in-postgres"),
    );
    assert_eq!(ok(&["get", "db/password"], None), b"hunter3-in-postgres");
    assert_eq!(
        ok(&["get", "db/password", "--version", "1"], None),
        b"hunter2-in-postgres"
    );
    assert_eq!(ok(&["list"], None), b"api/token\ndb/password\n");
    assert_eq!(
        String::from_utf8(ok(&["history", "db/password"], None))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // Two processes writing at once: every acknowledged write is there.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let body: String = (0..50).map(|i| format!("w{w}/k{i}=v{w}-{i}\n")).collect();
            start(
                &e,
                &url,
                &["import", "-", "--format", "dotenv"],
                body.as_bytes(),
            )
        })
        .collect();
    for w in writers {
        let o = w.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(ok(&["get", "w1/k49"], None), b"v1-49");
    ok(&["rm", "api/token"], None);
    assert_eq!(code(&e.run_with(&["get", "api/token"], None, &at)), 4);
    ok(&["undelete", "api/token"], None);
    assert_eq!(ok(&["get", "api/token"], None), b"tok-in-postgres");
    ok(&["set", "gone"], Some(b"x"));
    ok(&["destroy", "gone", "--yes"], None);
    assert_eq!(code(&e.run_with(&["get", "gone"], None, &at)), 4);
    // A managed key, and an export moved to a vault in a directory.
    ok(&["key", "create", "payments"], None);
    let token = ok(&["key", "encrypt", "payments"], Some(b"card 4242"));
    assert_eq!(
        ok(&["key", "decrypt", "payments"], Some(&token)),
        b"card 4242"
    );
    let export = e.path("all.vexp");
    let mut with_export = at.to_vec();
    with_export.push(("VAULT_EXPORT_PASSPHRASE", OsStr::new("export pass")));
    let o = e.run_with(
        &[
            "export",
            "--all",
            "--keys",
            "--out",
            export.to_str().unwrap(),
        ],
        None,
        &with_export,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let other = Env::new();
    other.init();
    let o = other.run_with(
        &["import", export.to_str().unwrap()],
        None,
        &[("VAULT_EXPORT_PASSPHRASE", OsStr::new("export pass"))],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        other.ok(&["get", "db/password"], None),
        b"hunter3-in-postgres"
    );
    // A backup of the database vault, restored into a directory.
    let backup = e.path("db.vbak");
    let mut with_backup = at.to_vec();
    with_backup.push(("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass")));
    let o = e.run_with(&["backup", backup.to_str().unwrap()], None, &with_backup);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let restored = Env::new();
    let o = restored.run_with(
        &[
            "restore",
            backup.to_str().unwrap(),
            "--to",
            restored.vault_dir().to_str().unwrap(),
        ],
        None,
        &[
            ("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass")),
            (
                "VAULT_NEW_PASSPHRASE_FILE",
                restored.pass_file().as_os_str(),
            ),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        restored.ok(&["get", "db/password"], None),
        b"hunter3-in-postgres"
    );
    ok(&["compact"], None);
    ok(&["rotate-master-key"], None);
    assert_eq!(ok(&["get", "db/password"], None), b"hunter3-in-postgres");
    assert!(ok(&["verify"], None).starts_with(b"ok"));

    // The audit trail is in the database: every client's operations in one chain.
    let trail = String::from_utf8(ok(&["audit"], None)).unwrap();
    for op in ["write", "read", "master-key-rotation", "destroy"] {
        assert!(trail.contains(op), "no {op} in the trail:\n{trail}");
    }
    assert!(ok(&["audit", "verify"], None).starts_with(b"ok"));
    // Entries edited or taken away in the database are found: a byte changed in an entry
    // (then put back), and the last entry cut off (this client's anchor saw it).
    let pieces = "vault_team.audit_pieces";
    let middle = format!(
        "(name, off) = (SELECT name, min(off) FROM {pieces} WHERE name = 'audit.0' AND off > 0 \
         GROUP BY name)"
    );
    let kept = pg.sql(&format!(
        "SELECT encode(bytes, 'hex') FROM {pieces} WHERE {middle}"
    ));
    pg.sql(&format!(
        "UPDATE {pieces} SET bytes = set_byte(bytes, length(bytes) / 2, \
         get_byte(bytes, length(bytes) / 2) # 1) WHERE {middle}"
    ));
    let o = e.run_with(&["audit", "verify"], None, &at);
    assert_eq!(code(&o), 5, "an edited trail verified: {}", stderr(&o));
    pg.sql(&format!(
        "UPDATE {pieces} SET bytes = decode('{}', 'hex') WHERE {middle}",
        kept.trim()
    ));
    assert!(ok(&["audit", "verify"], None).starts_with(b"ok"));
    pg.sql(&format!(
        "DELETE FROM {pieces} WHERE (name, off) = (SELECT name, max(off) FROM {pieces} \
         WHERE name ~ '^audit[.][0-9]' GROUP BY name ORDER BY name DESC LIMIT 1)"
    ));
    let o = e.run_with(&["audit", "verify"], None, &at);
    assert_eq!(code(&o), 5, "a cut-off trail verified: {}", stderr(&o));
    // Not yet for a database (docs/designs/postgres.md): said plainly.
    let doctor = String::from_utf8(ok(&["doctor"], None)).unwrap();
    for needle in [
        "PostgreSQL 15",
        "a local socket",
        "schema version 2",
        "rollback record",
    ] {
        assert!(doctor.contains(needle), "no {needle:?} in:\n{doctor}");
    }
    // The raw tables: ciphertext only.
    let raw = pg.sql(
        "SELECT encode(body, 'hex') FROM vault_team.frames
         UNION ALL SELECT encode(bytes, 'hex') FROM vault_team.header
         UNION ALL SELECT encode(bytes, 'hex') FROM vault_team.index_blocks
         UNION ALL SELECT encode(bytes, 'hex') FROM vault_team.audit_pieces",
    );
    assert!(
        raw.len() > 1000,
        "the tables hold the vault: {} hex digits",
        raw.len()
    );
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for known in [
        &b"hunter3-in-postgres"[..],
        b"hunter2-in-postgres",
        b"tok-in-postgres",
        b"db/password",
        b"api/token",
        b"w0/k1",
        b"env=prod",
        PASSPHRASE.as_bytes(),
    ] {
        assert!(
            !raw.contains(&hex(known)),
            "{:?} is in the database in the clear",
            String::from_utf8_lossy(known)
        );
    }
    // A password in the URL never reaches a message.
    let o = e.run_with(
        &["get", "x"],
        None,
        &[(
            "VAULT_DIR",
            OsStr::new("postgres://vault:s3cret-pw@localhost:1/none?vault=team"),
        )],
    );
    assert_ne!(code(&o), 0);
    assert!(!stderr(&o).contains("s3cret-pw"), "{}", stderr(&o));
    // The log's key epoch set back by hand (it was 1 after the rotation): damage, not a
    // rotation to wait out.
    pg.sql("UPDATE vault_team.log SET epoch = 0");
    let o = e.run_with(&["get", "db/password"], None, &at);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("older than the header"),
        "{}",
        stderr(&o)
    );
}

/// A writer's number, the keys it had acknowledged, and those refused with the message.
type Writer = (usize, Vec<usize>, Vec<(usize, String)>);

/// Ten client processes writing to one vault at once, with the server restarted in the middle:
/// a command that could not reach the server fails (exit 1, saying so) and the next one after
/// the restart works; every acknowledged write is there at the end; and of ten check-and-set
/// writes on the same version, exactly one wins and the others are conflicts (exit 7).
#[test]
fn ten_clients_and_a_server_restart() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let url = url(&pg, "busy");
    let at = [("VAULT_DIR", OsStr::new(&url))];
    init(&e, &url);
    let o = e.run_with(&["set", "shared"], Some(b"v1"), &at);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Check-and-set from ten processes at once.
    let cas: Vec<_> = (0..10)
        .map(|w| {
            start(
                &e,
                &url,
                &["set", "shared", "--expect-version", "1"],
                format!("w{w}").as_bytes(),
            )
        })
        .collect();
    let codes: Vec<i32> = cas
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap_or(-1))
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 7).count(), 9, "{codes:?}");

    // Ten writers, the server restarted while they run.
    let write = |w: usize, k: usize| {
        let name = format!("w{w}/k{k}");
        start(
            &e,
            &url,
            &["set", &name],
            format!("value {w} {k}").as_bytes(),
        )
        .wait_with_output()
        .unwrap()
    };
    let restarted = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Writer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|w| {
                let (write, restarted) = (&write, &restarted);
                s.spawn(move || {
                    let (mut acked, mut failed) = (Vec::new(), Vec::new());
                    // Until five writes after the restart were acknowledged: clients go on.
                    let mut after = 0;
                    for k in 0..400 {
                        let back = restarted.load(std::sync::atomic::Ordering::SeqCst);
                        let o = write(w, k);
                        match o.status.code() {
                            Some(0) => {
                                acked.push(k);
                                after += usize::from(back);
                            }
                            _ => failed.push((k, String::from_utf8_lossy(&o.stderr).into_owned())),
                        }
                        if after >= 5 {
                            break;
                        }
                    }
                    assert!(after >= 5, "w{w}: no writes after the restart");
                    (w, acked, failed)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(800));
        pg.restart();
        restarted.store(true, std::sync::atomic::Ordering::SeqCst);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut acked_total = 0;
    let mut failed_total = 0;
    for (w, acked, failed) in &results {
        for (k, why) in failed {
            // A failure is the server being away, said as such: never damage, never a panic.
            assert!(
                why.contains("I/O error") || why.contains("busy"),
                "w{w}/k{k}: {why}"
            );
        }
        for k in acked {
            let o = e.run_with(&["get", &format!("w{w}/k{k}")], None, &at);
            assert_eq!(
                o.stdout,
                format!("value {w} {k}").as_bytes(),
                "acknowledged w{w}/k{k} lost: {}",
                stderr(&o)
            );
        }
        acked_total += acked.len();
        failed_total += failed.len();
    }
    eprintln!(
        "{acked_total} writes acknowledged, {failed_total} refused while the server was away"
    );
    assert!(failed_total > 0, "the restart was seen by some command");
    let o = e.run_with(&["verify"], None, &at);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Ten clients appended to one audit chain, across the restart: it verifies whole, and
    // holds an entry for every acknowledged write.
    let o = e.run_with(&["audit", "verify"], None, &at);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = e.run_with(&["audit", "--op", "write", "--json"], None, &at);
    let writes = String::from_utf8_lossy(&o.stdout).lines().count();
    assert!(
        writes >= acked_total,
        "{writes} write entries for {acked_total} acknowledged writes"
    );
}

/// A team on one database vault: alice creates it as its first member, adds bob (who types his
/// passphrase), invites carol (who joins with the code and her own passphrase) and 47 more,
/// then removes bob: his passphrase, and his old key slot put back, open nothing written
/// afterwards; every other member reads every secret.
#[test]
fn a_team_of_fifty_and_a_removal_that_cuts_access() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let url = url(&pg, "team");
    let pass_of = |who: &str| pass_file(&e, who);
    let run_as = |who: &str, args: &[&str], input: Option<&[u8]>, extra: &[(&str, &OsStr)]| {
        let file = pass_of(who);
        let mut envs = vec![
            ("VAULT_DIR", OsStr::new(&url)),
            ("VAULT_MEMBER", OsStr::new(who)),
            ("VAULT_PASSPHRASE_FILE", file.as_os_str()),
        ];
        envs.extend_from_slice(extra);
        e.run_with(args, input, &envs)
    };
    let ok_as = |who: &str, args: &[&str], input: Option<&[u8]>, extra: &[(&str, &OsStr)]| {
        let o = run_as(who, args, input, extra);
        assert_eq!(code(&o), 0, "{who} {args:?}: {}", stderr(&o));
        o
    };
    ok_as("alice", &CHEAP_INIT, None, &[]);
    ok_as(
        "alice",
        &["set", "db/password"],
        Some(b"before-removal"),
        &[],
    );
    let bob_pass = pass_of("bob");
    ok_as(
        "alice",
        &["member", "add", "bob"],
        None,
        &[("VAULT_NEW_PASSPHRASE_FILE", bob_pass.as_os_str())],
    );
    let code_out = ok_as("alice", &["member", "add", "carol", "--invite"], None, &[]);
    let invitation = String::from_utf8(code_out.stdout).unwrap();
    assert_eq!(invitation.trim().len(), 64 + 7, "{invitation}");
    // Carol's passphrase does not open her slot before she joins; the code does, once.
    assert_ne!(code(&run_as("carol", &["list"], None, &[])), 0);
    let carol_pass = pass_of("carol");
    ok_as(
        "carol",
        &["member", "join", "carol"],
        None,
        &[
            ("VAULT_INVITATION", OsStr::new(invitation.trim())),
            ("VAULT_NEW_PASSPHRASE_FILE", carol_pass.as_os_str()),
        ],
    );
    let again = run_as(
        "carol",
        &["member", "join", "carol"],
        None,
        &[
            ("VAULT_INVITATION", OsStr::new(invitation.trim())),
            ("VAULT_NEW_PASSPHRASE_FILE", carol_pass.as_os_str()),
        ],
    );
    assert_ne!(code(&again), 0, "the invitation code opened twice");
    for i in 0..47 {
        let p = pass_of(&format!("m{i}"));
        ok_as(
            "alice",
            &["member", "add", &format!("m{i}")],
            None,
            &[("VAULT_NEW_PASSPHRASE_FILE", p.as_os_str())],
        );
    }
    let listed =
        String::from_utf8(ok_as("bob", &["member", "list", "--json"], None, &[]).stdout).unwrap();
    assert_eq!(listed.lines().count(), 50, "{listed}");
    assert!(
        listed.contains(r#""name":"bob","slot":1,"state":"joined","vouched":true,"you":true"#),
        "{listed}"
    );
    assert!(
        listed.contains(r#""name":"carol","slot":2,"state":"joined","vouched":true,"you":false"#),
        "{listed}"
    );
    ok_as("bob", &["set", "from/bob"], Some(b"bob wrote this"), &[]);
    assert_eq!(
        ok_as("m46", &["get", "from/bob"], None, &[]).stdout,
        b"bob wrote this"
    );

    // Bob adds a member of his own (a passphrase he knows): the removal names it.
    let zed_pass = pass_of("zed");
    ok_as(
        "bob",
        &["member", "add", "zed"],
        None,
        &[("VAULT_NEW_PASSPHRASE_FILE", zed_pass.as_os_str())],
    );
    let old_header = pg.sql("SELECT encode(bytes, 'hex') FROM vault_team.header");
    // Carol removes bob.
    let o = ok_as("carol", &["member", "remove", "bob", "--yes"], None, &[]);
    assert!(
        stderr(&o).contains("and stay members: zed"),
        "{}",
        stderr(&o)
    );
    ok_as("carol", &["member", "remove", "zed", "--yes"], None, &[]);
    ok_as(
        "alice",
        &["set", "db/password"],
        Some(b"after-removal"),
        &[],
    );
    let o = run_as("bob", &["get", "db/password"], None, &[]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("member bob"), "{}", stderr(&o));
    // Without naming himself, his passphrase is tried against every slot: none opens.
    let o = e.run_with(
        &["get", "db/password"],
        None,
        &[
            ("VAULT_DIR", OsStr::new(&url)),
            ("VAULT_PASSPHRASE_FILE", bob_pass.as_os_str()),
        ],
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    // His old header put back (he kept a copy, or a backup of the database): the data is
    // under a key that header does not hold, and it is refused as damage, not read.
    let new_header = pg.sql("SELECT encode(bytes, 'hex') FROM vault_team.header");
    pg.sql(&format!(
        "UPDATE vault_team.header SET bytes = decode('{old_header}', 'hex')"
    ));
    let o = run_as("bob", &["get", "db/password"], None, &[]);
    assert_ne!(code(&o), 0, "bob read with his old header: {}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("after-removal"));
    pg.sql(&format!(
        "UPDATE vault_team.header SET bytes = decode('{new_header}', 'hex')"
    ));
    for who in ["alice", "carol", "m0", "m46"] {
        assert_eq!(
            ok_as(who, &["get", "db/password"], None, &[]).stdout,
            b"after-removal"
        );
        assert_eq!(
            ok_as(who, &["get", "from/bob"], None, &[]).stdout,
            b"bob wrote this"
        );
    }
    let listed = String::from_utf8(ok_as("alice", &["member", "list"], None, &[]).stdout).unwrap();
    assert_eq!(listed.lines().count(), 49, "{listed}");
    assert!(!listed.contains("bob"), "{listed}");
    // One audit chain in the database holds every member's operations, member changes too.
    let trail = String::from_utf8(ok_as("m3", &["audit", "--json"], None, &[]).stdout).unwrap();
    for needle in [
        "member-add",
        "member-remove",
        "(member bob)",
        "(member carol)",
    ] {
        assert!(trail.contains(needle), "no {needle} in the trail:\n{trail}");
    }
    let o = ok_as("carol", &["audit", "verify"], None, &[]);
    assert!(
        o.stdout.starts_with(b"ok"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A removal whose rotation fails (the server refuses the switch to the new log): bob's slot is
/// already marked and opens nothing; reads warn that the removal is pending, and the next
/// command that writes finishes it.
#[test]
fn an_interrupted_removal_is_finished_by_the_next_write() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let url = url(&pg, "halfway");
    let file = |who: &str| pass_file(&e, who);
    let (alice, bob) = (file("alice"), file("bob"));
    let as_ = |pass: &std::path::Path, member: &str, args: &[&str], input: Option<&[u8]>| {
        e.run_with(
            args,
            input,
            &[
                ("VAULT_DIR", OsStr::new(&url)),
                ("VAULT_MEMBER", OsStr::new(member)),
                ("VAULT_PASSPHRASE_FILE", pass.as_os_str()),
            ],
        )
    };
    let init = as_(&alice, "alice", &CHEAP_INIT, None);
    assert_eq!(code(&init), 0, "{}", stderr(&init));
    // Bob's passphrase, typed by him, is read as a new passphrase: here from his file.
    let add = e.run_with(
        &["member", "add", "bob"],
        None,
        &[
            ("VAULT_DIR", OsStr::new(&url)),
            ("VAULT_MEMBER", OsStr::new("alice")),
            ("VAULT_PASSPHRASE_FILE", alice.as_os_str()),
            ("VAULT_NEW_PASSPHRASE_FILE", bob.as_os_str()),
        ],
    );
    assert_eq!(code(&add), 0, "{}", stderr(&add));
    let o = as_(&alice, "alice", &["set", "k"], Some(b"v"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The switch to the new key's log fails on the server.
    pg.sql(
        "CREATE FUNCTION vault_halfway.refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON vault_halfway.log \
         FOR EACH ROW EXECUTE FUNCTION vault_halfway.refuse()",
    );
    let o = as_(&alice, "alice", &["member", "remove", "bob", "--yes"], None);
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("finishes it"), "{}", stderr(&o));
    assert_ne!(
        code(&as_(&bob, "bob", &["get", "k"], None)),
        0,
        "bob opened"
    );
    let o = as_(&alice, "alice", &["member", "list"], None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed"));
    assert!(stderr(&o).contains("not finished"), "{}", stderr(&o));
    let o = as_(&alice, "alice", &["doctor"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("the removal of bob is not finished"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // While the rotation still cannot be done, nothing is written under the key bob may hold.
    let o = as_(&alice, "alice", &["set", "too-early"], Some(b"x"));
    assert_ne!(
        code(&o),
        0,
        "a write went in under the old key: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("not finished"), "{}", stderr(&o));
    assert_eq!(code(&as_(&alice, "alice", &["get", "too-early"], None)), 4);
    pg.sql("DROP TRIGGER refuse ON vault_halfway.log");
    let o = as_(&alice, "alice", &["set", "k2"], Some(b"v2"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("finished removing member(s) bob"),
        "{}",
        stderr(&o)
    );
    let o = as_(&alice, "alice", &["member", "list"], None);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "alice\tjoined\tslot 0\t(you)"
    );
    let o = as_(&alice, "alice", &["get", "k"], None);
    assert_eq!(o.stdout, b"v");
}

/// The roles and grants docs/OPERATIONS.md shows: the owner creates the vault as its first
/// member and grants the member role the vault's tables; bob, a member role with no other
/// right, reads and writes through vault but cannot create anything in the schema.
#[test]
fn the_documented_roles_and_grants_are_enough_for_a_member() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    pg.sql(
        "CREATE ROLE vault_team_owner NOLOGIN; CREATE ROLE vault_team_member NOLOGIN;
         GRANT CREATE, CONNECT ON DATABASE postgres TO vault_team_owner;
         CREATE ROLE alice LOGIN IN ROLE vault_team_member, vault_team_owner;
         CREATE ROLE bob LOGIN IN ROLE vault_team_member;
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
    );
    let at = |role: &str| {
        format!(
            "postgres://{role}@localhost/postgres?host={}&port=5432&vault=granted",
            pg.socket_dir().display()
        )
    };
    let file = |who: &str| pass_file(&e, who);
    let (alice, bob) = (file("alice"), file("bob"));
    // VAULT_NEW_PASSPHRASE_FILE: alice's own for init, bob's for adding him.
    let run = |role: &str, pass: &std::path::Path, args: &[&str], input: Option<&[u8]>| {
        let url = at(role);
        let new = if args == CHEAP_INIT { &alice } else { &bob };
        let o = e.run_with(
            args,
            input,
            &[
                ("VAULT_DIR", OsStr::new(&url)),
                ("VAULT_MEMBER", OsStr::new(role)),
                ("VAULT_PASSPHRASE_FILE", pass.as_os_str()),
                ("VAULT_NEW_PASSPHRASE_FILE", new.as_os_str()),
            ],
        );
        (code(&o), stderr(&o), o.stdout)
    };
    let (c, err, _) = run("alice", &alice, &CHEAP_INIT, None);
    assert_eq!(c, 0, "{err}");
    pg.sql(
        "SET ROLE alice;
         GRANT USAGE ON SCHEMA vault_granted TO vault_team_member;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA vault_granted TO vault_team_member;
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA vault_granted TO vault_team_member;",
    );
    let (c, err, _) = run("alice", &alice, &["member", "add", "bob"], None);
    assert_eq!(c, 0, "{err}");
    let (c, err, _) = run("bob", &bob, &["set", "from/bob"], Some(b"granted"));
    assert_eq!(c, 0, "{err}");
    let (c, err, out) = run("alice", &alice, &["get", "from/bob"], None);
    assert_eq!((c, out.as_slice()), (0, &b"granted"[..]), "{err}");
    // Compaction and rotation replace rows and switch the log: a member's grants cover them.
    for args in [&["compact"][..], &["rotate-master-key"][..]] {
        let (c, err, _) = run("bob", &bob, args, None);
        assert_eq!(c, 0, "bob {args:?}: {err}");
    }
    let (c, err, out) = run("bob", &bob, &["get", "from/bob"], None);
    assert_eq!((c, out.as_slice()), (0, &b"granted"[..]), "{err}");
    // Bob's role has no other right in the schema.
    let denied = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "psql -X -h {} -p 5432 -U bob -d postgres -c 'CREATE TABLE vault_granted.x (i int)'",
            pg.socket_dir().display()
        ))
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&denied.stderr);
    assert!(
        !denied.status.success() && why.contains("permission denied"),
        "{why}"
    );
}

/// TLS where the server offers it: a server that takes TCP connections over TLS only is used
/// with the default `sslmode` (prefer) and with `require`; with `sslrootcert` the server's
/// certificate is verified (its own CA passes, another fails); `sslmode=disable` is turned away.
#[test]
fn tls_where_the_server_offers_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pg = match PgServer::start_tls(port) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("skipped: no PostgreSQL server with TLS here: {why}");
            return;
        }
    };
    let e = Env::new();
    let base = format!("postgres://vault@localhost:{port}/postgres?vault=tls");
    init(&e, &base);
    let run = |url: &str, args: &[&str], input: Option<&[u8]>| {
        let o = e.run_with(args, input, &[("VAULT_DIR", OsStr::new(url))]);
        (code(&o), stderr(&o), o.stdout)
    };
    let (c, err, _) = run(&base, &["set", "k"], Some(b"over tls"));
    assert_eq!(c, 0, "{err}");
    let ca = pg.certificate();
    let verified = format!("{base}&sslmode=require&sslrootcert={}", ca.display());
    let (c, err, out) = run(&verified, &["get", "k"], None);
    assert_eq!((c, out.as_slice()), (0, &b"over tls"[..]), "{err}");
    let (c, err, _) = run(&format!("{base}&sslmode=require"), &["get", "k"], None);
    assert_eq!(c, 0, "{err}");
    // doctor says whether the server is verified.
    let (c, err, out) = run(&verified, &["doctor"], None);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(c, 0, "{err}");
    assert!(out.contains("the server's certificate verified"), "{out}");
    let (_, _, out) = run(&base, &["doctor"], None);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("the server is not verified"), "{out}");
    // Another CA: the server's certificate does not chain to it.
    let other = e.path("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(e.path("other.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    let (c, err, out) = run(
        &format!("{base}&sslrootcert={}", other.display()),
        &["get", "k"],
        None,
    );
    assert_ne!(
        c, 0,
        "a server that does not chain to the given CA was trusted"
    );
    assert!(out.is_empty());
    assert!(err.contains("certificate"), "{err}");
    let full = format!("{base}&sslmode=verify-full&sslrootcert={}", ca.display());
    let (c, err, out) = run(&full, &["get", "k"], None);
    assert_eq!((c, out.as_slice()), (0, &b"over tls"[..]), "{err}");
    // A CA given means TLS is required: a server without it is refused, not talked to in the
    // clear.
    let plain_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let plain = PgServer::start_durable(Some(plain_port)).unwrap();
    let plain_url = format!(
        "postgres://vault@localhost:{plain_port}/postgres?vault=tls&sslrootcert={}",
        ca.display()
    );
    let (c, err, _) = run(&plain_url, &["init"], None);
    assert_ne!(c, 0, "a plain server was used although a CA was given");
    assert!(
        err.contains("TLS") || err.contains("tls") || err.contains("SSL"),
        "{err}"
    );
    drop(plain);
    let (c, err, _) = run(&format!("{base}&sslmode=disable"), &["get", "k"], None);
    assert_ne!(c, 0, "a plain connection was taken");
    assert!(
        err.contains("pg_hba") || err.contains("no encryption"),
        "{err}"
    );
}

/// Two clients, each with its own state directory (its own anchor), share one trail: entries
/// carol saw written are deleted in the database and dave appends after the cut, so the trail
/// grows past carol's anchor; carol's next command still finds the loss, and `audit verify`
/// fails.
#[test]
fn audit_entries_removed_under_later_appends_are_found() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let url = url(&pg, "anchors");
    let as_ =
        |who: &str, args: &[&str], input: Option<&[u8]>| as_client(&e, &url, who, args, input);
    let o = as_("carol", &CHEAP_INIT, None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for (who, args) in [
        ("carol", &["set", "a"][..]),
        ("dave", &["list"]),
        ("carol", &["get", "a"]),
    ] {
        let o = as_(who, args, Some(b"x"));
        assert_eq!(code(&o), 0, "{who} {args:?}: {}", stderr(&o));
    }
    // Carol's last append (her read) is deleted; dave appends twice after the cut.
    pg.sql(
        "DELETE FROM vault_anchors.audit_pieces WHERE (name, off) = \
         (SELECT name, max(off) FROM vault_anchors.audit_pieces \
          WHERE name ~ '^audit[.][0-9]' GROUP BY name ORDER BY name DESC LIMIT 1); \
         UPDATE vault_anchors.audit_files f SET len = coalesce( \
          (SELECT max(off + length(bytes)) FROM vault_anchors.audit_pieces p WHERE p.name = f.name), 0)",
    );
    for _ in 0..2 {
        assert_eq!(code(&as_("dave", &["list"], None)), 0);
    }
    let o = as_("carol", &["audit", "verify"], None);
    assert_eq!(
        code(&o),
        5,
        "carol's lost entries went unnoticed: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("no longer where it was"),
        "{}",
        stderr(&o)
    );
}

/// A client that only reads still notices the database put back to an older state than one it
/// read: its rollback record follows what it reads, not only what it writes.
#[test]
fn a_reader_notices_the_database_put_back() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let url = url(&pg, "putback");
    let as_ =
        |who: &str, args: &[&str], input: Option<&[u8]>| as_client(&e, &url, who, args, input);
    let ok = |who: &str, args: &[&str], input: Option<&[u8]>| {
        let o = as_(who, args, input);
        assert_eq!(code(&o), 0, "{who} {args:?}: {}", stderr(&o));
        o.stdout
    };
    ok("writer", &CHEAP_INIT, None);
    ok("writer", &["set", "s"], Some(b"old"));
    let tables = [
        "header",
        "log",
        "frames",
        "indexes",
        "index_blocks",
        "index_of",
    ];
    for t in tables {
        pg.sql(&format!(
            "CREATE TABLE public.kept_{t} AS SELECT * FROM vault_putback.{t}"
        ));
    }
    ok("writer", &["set", "s"], Some(b"new"));
    ok("writer", &["rotate-master-key"], None);
    assert_eq!(ok("reader", &["get", "s"], None), b"new");
    let restore: String = tables
        .iter()
        .map(|t| {
            format!("DELETE FROM vault_putback.{t}; INSERT INTO vault_putback.{t} SELECT * FROM public.kept_{t}; ")
        })
        .collect();
    pg.sql(&format!("BEGIN; {restore} COMMIT;"));
    let o = as_("reader", &["get", "s"], None);
    assert_eq!(
        code(&o),
        5,
        "the reader read the older state: {}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("put back to before a master-key rotation"),
        "{}",
        stderr(&o)
    );
    // A schema of a newer build, or with no valid version, is refused, not used.
    for (version, says) in [
        ("99", "newer version"),
        ("x", "schema version"),
        ("0", "schema version"),
    ] {
        pg.sql(&format!(
            "UPDATE vault_putback.meta SET value = '{version}' WHERE key = 'schema_version'"
        ));
        let o = as_("writer", &["list"], None);
        assert_ne!(code(&o), 0, "schema version {version} was used");
        assert!(stderr(&o).contains(says), "{version}: {}", stderr(&o));
    }
}

/// The agent for a database vault: unlocked once by a member, it serves that member's commands
/// with no passphrase (others' commits seen), keeps the location's password off its command
/// line, and a rotation by another client makes it refuse rather than serve a stale key.
#[test]
fn an_agent_serves_a_database_vault() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let run = e.path("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // A password in the location (the test server trusts every connection: it is not checked).
    let url = format!(
        "postgres://vault:db-password-7@localhost/postgres?host={}&port=5432&vault=agent",
        pg.socket_dir().display()
    );
    let alice = pass_file(&e, "alice");
    let as_alice = |args: &[&str], input: Option<&[u8]>, with_pass: bool| {
        let pass = if with_pass {
            alice.as_os_str()
        } else {
            OsStr::new("")
        };
        e.run_with(
            args,
            input,
            &[
                ("VAULT_DIR", OsStr::new(&url)),
                ("VAULT_MEMBER", OsStr::new("alice")),
                ("VAULT_PASSPHRASE_FILE", pass),
                ("XDG_RUNTIME_DIR", run.as_os_str()),
            ],
        )
    };
    let o = as_alice(&CHEAP_INIT, None, true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = as_alice(&["set", "k"], Some(b"v1"), true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = as_alice(&["unlock", "--timeout", "60s"], None, true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    let pid: u32 = said
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !cmdline.windows(13).any(|w| w == b"db-password-7"),
        "the location's password is on the agent's command line"
    );
    let o = as_alice(&["get", "k"], None, false);
    assert_eq!(
        (code(&o), o.stdout.as_slice()),
        (0, &b"v1"[..]),
        "{}",
        stderr(&o)
    );
    // Another client's commit is seen through the agent.
    let other = e.run_with(
        &["set", "k"],
        Some(b"v2"),
        &[
            ("VAULT_DIR", OsStr::new(&url)),
            ("VAULT_MEMBER", OsStr::new("alice")),
            ("VAULT_PASSPHRASE_FILE", alice.as_os_str()),
            ("VAULT_STATE_DIR", e.path("state-other").as_os_str()),
        ],
    );
    assert_eq!(code(&other), 0, "{}", stderr(&other));
    let o = as_alice(&["get", "k"], None, false);
    assert_eq!(
        (code(&o), o.stdout.as_slice()),
        (0, &b"v2"[..]),
        "{}",
        stderr(&o)
    );
    // A rotation elsewhere: the agent's key is old, and it says so rather than serve it.
    let rotated = e.run_with(
        &["rotate-master-key"],
        None,
        &[
            ("VAULT_DIR", OsStr::new(&url)),
            ("VAULT_MEMBER", OsStr::new("alice")),
            ("VAULT_PASSPHRASE_FILE", alice.as_os_str()),
            ("VAULT_STATE_DIR", e.path("state-other").as_os_str()),
        ],
    );
    assert_eq!(code(&rotated), 0, "{}", stderr(&rotated));
    let o = as_alice(&["get", "k"], None, false);
    assert_ne!(
        code(&o),
        0,
        "a stale agent served: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let _ = as_alice(&["lock"], None, false);
}

/// Audit retention on a database vault: a size limit seals files and removes the oldest (a
/// sealed file's successor is written under a temporary name and renamed, and the handle
/// follows it), with no warning, and the trail verifies and stays near the limit.
#[test]
fn audit_retention_works_in_the_database() {
    let Some(pg) = server() else { return };
    let e = Env::new();
    let url = url(&pg, "retention");
    init(&e, &url);
    let at = [("VAULT_DIR", OsStr::new(&url))];
    let ok = |args: &[&str], input: Option<&[u8]>| {
        let o = e.run_with(args, input, &at);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("WARN"), "{args:?}: {}", stderr(&o));
    };
    ok(
        &["audit", "policy", "--names", "clear", "--max-size", "1MiB"],
        None,
    );
    for round in 0..5 {
        let body: String = (0..1500)
            .map(|i| format!("r{round}/{}{i}=v\n", "n".repeat(150)))
            .collect();
        ok(
            &["import", "-", "--format", "dotenv"],
            Some(body.as_bytes()),
        );
    }
    ok(&["audit", "verify"], None);
    let files = pg.sql("SELECT count(*) || ' ' || sum(len) FROM vault_retention.audit_files");
    let mut parts = files.split_whitespace();
    let (n, bytes): (u64, u64) = (
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    );
    assert!(n > 1, "no file was sealed: {files}");
    assert!(
        bytes < 3 * 1024 * 1024,
        "retention kept {bytes} bytes in {n} files"
    );
}
