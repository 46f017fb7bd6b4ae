//! The name syntax: what a new secret or key may be called (refused otherwise, with the reason
//! and before any passphrase where it can be), and names stored under the older, wider syntax,
//! which keep working (read, listed, given new versions, removed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::ffi::OsStr;
use std::path::Path;

use common::*;

/// New names outside the syntax are refused as usage errors saying what is wrong; names inside
/// it are taken, and map to the documented variable in `vault run`.
#[test]
fn new_names_follow_the_syntax() {
    let e = Env::new();
    e.init();
    for (name, why) in [
        ("my key", "a space"),
        ("a=b", "'='"),
        ("../up", "`..` part"),
        ("a//b", "`//`"),
        ("caf\u{e9}", "U+00E9"),
        ("bad!", "'!'"),
    ] {
        let o = e.run_with(&["set", name], Some(b"v"), &[]);
        assert_eq!(code(&o), 2, "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{name}: {}", stderr(&o));
        // A key's name is new by definition: refused before any passphrase.
        let o = e.run_with(
            &["key", "create", name],
            None,
            &[("VAULT_PASSPHRASE_FILE", OsStr::new(""))],
        );
        assert_eq!(code(&o), 2, "key {name}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "key {name}: {}", stderr(&o));
    }
    // `-rf` reads as an option unless after `--`; after it, the name is refused for its dash.
    let o = e.run_with(&["set", "--", "-rf"], Some(b"v"), &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("start with `-`"), "{}", stderr(&o));
    assert_eq!(e.ok(&["list"], None), b"", "nothing was stored");

    for name in [
        "db/password",
        "me@example.com",
        "svc.prod/api-token_v2",
        "a+b",
    ] {
        e.ok(&["set", name], Some(b"v"));
    }
    // A name given twice in --only is one secret.
    e.ok(
        &["run", "--only", "db/password,db/password", "--", "true"],
        None,
    );
    let out = e.ok(&["run", "--", "sh", "-c", "env"], None);
    let env = String::from_utf8(out).unwrap();
    for var in [
        "DB_PASSWORD=v",
        "SVC_PROD_API_TOKEN_V2=v",
        "ME_EXAMPLE_COM=v",
        "A_B=v",
    ] {
        assert!(env.lines().any(|l| l == var), "{var} in\n{env}");
    }
}

/// A lookup's name is checked against what any vault may hold (not the newer syntax), before the
/// passphrase: a control character is a usage error, a well-formed unknown name is "not found".
#[test]
fn lookups_take_any_stored_name() {
    let e = Env::new();
    e.init();
    let none = [("VAULT_PASSPHRASE_FILE", OsStr::new(""))];
    for cmd in ["get", "rm", "history", "undelete"] {
        let o = e.run_with(&[cmd, "a\u{7}b"], None, &none);
        assert_eq!(code(&o), 2, "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("control"), "{cmd}: {}", stderr(&o));
    }
    let o = e.run(&["get", "bad name!"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    // The lookups inside `run --only` and an `inject` template, too.
    let o = e.run_with(&["run", "--only", "ok,a\u{1}b", "--", "true"], None, &none);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = e.run_with(&["inject"], Some(b"x={{ vault:a\tb }}\n"), &none);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("line 1"), "{}", stderr(&o));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

/// A vault written before the syntax was narrowed (`tests/data/older-names`): its names are
/// listed and read, take new versions, are removed and restored, exported and imported back;
/// only a name new to the vault is held to the syntax.
#[test]
fn names_stored_under_the_older_syntax_keep_working() {
    let e = Env::new();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/older-names/vault"),
        &e.vault_dir(),
    );
    std::fs::write(e.pass_file(), "older names\n").unwrap();
    let listed = String::from_utf8(e.ok(&["list"], None)).unwrap();
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["a=b", "caf\u{e9}", "db/password", "my key", "x/../y"]
    );
    for (name, value) in [
        ("my key", "spaced"),
        ("a=b", "equals"),
        ("x/../y", "dots"),
        ("caf\u{e9}", "accent"),
    ] {
        assert_eq!(e.ok(&["get", name], None), value.as_bytes(), "{name}");
        e.ok(&["set", name], Some(b"second"));
        assert_eq!(e.ok(&["get", name], None), b"second", "{name}");
    }
    e.ok(&["rm", "my key"], None);
    assert_eq!(code(&e.run(&["get", "my key"])), 4);
    e.ok(&["undelete", "my key"], None);
    e.ok(&["set", "my key"], Some(b"third"));
    assert_eq!(e.ok(&["get", "my key"], None), b"third");
    // Exported and imported back into the same vault: the names exist there.
    let path = e.path("all.json");
    let file = path.to_str().unwrap();
    e.ok(
        &["export", "--all", "--format", "json", "--out", file],
        None,
    );
    e.ok(&["set", "a=b"], Some(b"changed"));
    e.ok(&["import", file, "--format", "json"], None);
    assert_eq!(e.ok(&["get", "a=b"], None), b"second");
    // A name dotenv cannot hold back: refused, pointing at json.
    let o = e.run(&["export", "a=b", "--format", "dotenv", "--out", "-"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--format json"), "{}", stderr(&o));
    // The managed key works under its older name too.
    let signed = e.ok(&["key", "sign", "signing key"], Some(b"message"));
    assert!(!signed.is_empty());
    // A name new to the vault is held to the syntax, after the vault is opened.
    let o = e.run_with(&["set", "other key"], Some(b"v"), &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("a space"), "{}", stderr(&o));
    assert!(e.ok(&["verify"], None).starts_with(b"ok"));
}

/// Names outside the syntax arriving by import: from a dotenv file, every one is reported with
/// its line (dry run too), before the passphrase when other errors are found, and taken where
/// the vault already holds the name; from a sealed export, refused in a vault that does not hold
/// them (secrets and keys), taken back into the one that does.
#[test]
fn imports_hold_new_names_to_the_syntax() {
    let e = Env::new();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/older-names/vault"),
        &e.vault_dir(),
    );
    std::fs::write(e.pass_file(), "older names\n").unwrap();
    let file = e.path("in.env");
    std::fs::write(&file, "OK1=1\nbad one=2\nmy key=3\n../x=4\nOK2=5\n").unwrap();
    let f = file.to_str().unwrap();
    for dry in [true, false] {
        let mut args = vec!["import", f, "--format", "dotenv"];
        if dry {
            args.push("--dry-run");
        }
        let o = e.run(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "dry {dry}: {err}");
        assert!(err.contains("line 2") && err.contains("line 4"), "{err}");
        assert!(
            !err.contains("line 3"),
            "my key is held by the vault: {err}"
        );
        assert!(err.contains("2 error(s)"), "{err}");
    }
    assert_eq!(code(&e.run(&["get", "OK1"])), 4, "nothing imported");
    // With another error in the input, all are reported before any passphrase.
    // A line that cannot be read at all hides none of them.
    std::fs::write(&file, "bad one=2\nOK=\nno equals sign\nx y=1\n").unwrap();
    let o = e.run_with(
        &["import", f, "--format", "dotenv"],
        None,
        &[("VAULT_PASSPHRASE_FILE", OsStr::new(""))],
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    for line in ["line 1", "line 2", "line 3", "line 4"] {
        assert!(err.contains(line), "{line}: {err}");
    }
    assert!(err.contains("already holds"), "{err}");
    let jsonl = e.path("in.jsonl");
    std::fs::write(
        &jsonl,
        "{\"name\":\"a b\",\"value\":\"1\"}\n{\"value\":\"2\"}\n{\"name\":\"c d\",\"value\":\"3\"}\n",
    )
    .unwrap();
    let o = e.run_with(
        &["import", jsonl.to_str().unwrap(), "--format", "jsonl"],
        None,
        &[("VAULT_PASSPHRASE_FILE", OsStr::new(""))],
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    for line in ["line 1", "line 2", "line 3"] {
        assert!(err.contains(line), "{line}: {err}");
    }
    // The held name alone is taken.
    std::fs::write(&file, "my key=3\n").unwrap();
    e.ok(&["import", f, "--format", "dotenv"], None);
    assert_eq!(e.ok(&["get", "my key"], None), b"3");

    // Sealed exports.
    let exp = [("VAULT_EXPORT_PASSPHRASE", OsStr::new("export pass"))];
    let secrets = e.path("s.vexp");
    let keys = e.path("k.vexp");
    for (args, path) in [
        (&["export", "my key", "--out"][..], &secrets),
        (&["key", "export", "signing key", "--out"], &keys),
    ] {
        let mut args = args.to_vec();
        args.push(path.to_str().unwrap());
        let o = e.run_with(&args, None, &exp);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let fresh = Env::new();
    fresh.init();
    for args in [
        &["import", secrets.to_str().unwrap()][..],
        &["key", "import", keys.to_str().unwrap()],
    ] {
        let o = fresh.run_with(args, None, &exp);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("a space"), "{}", stderr(&o));
    }
    assert_eq!(fresh.ok(&["list"], None), b"");
    let renamed = fresh.run_with(
        &[
            "key",
            "import",
            keys.to_str().unwrap(),
            "--rename",
            "signing-key",
        ],
        None,
        &exp,
    );
    assert_eq!(code(&renamed), 0, "{}", stderr(&renamed));
    // Back into the vault that holds them.
    for args in [
        &["import", secrets.to_str().unwrap(), "--replace"][..],
        &["key", "import", keys.to_str().unwrap(), "--replace"],
    ] {
        let o = e.run_with(args, None, &exp);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
}
