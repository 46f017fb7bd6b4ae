//! `vault key …` end to end: every command, tokens in text and binary form, streams beside
//! one-shot tokens, `--out` written only on success, and each refusal's exit code and message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use common::*;

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

#[test]
fn the_acceptance_scenario_from_the_command_line() {
    let e = Env::new();
    e.init();
    e.ok(&["key", "create", "pay"], None);
    let t1 = e.ok(
        &["key", "encrypt", "pay", "--ad", "order 7"],
        Some(b"card 4242"),
    );
    assert!(text(t1.clone()).starts_with("vault:v1:"));
    for _ in 0..3 {
        e.ok(&["key", "rotate", "pay"], None);
    }
    let dec = |extra: &[&str]| {
        let mut args = vec!["key", "decrypt", "pay", "--ad", "order 7"];
        args.extend_from_slice(extra);
        e.run_with(&args, Some(&t1), &[])
    };
    assert_eq!(dec(&[]).stdout, b"card 4242");
    e.ok(&["key", "set-state", "pay", "1", "disabled"], None);
    let refused = dec(&[]);
    assert_eq!(code(&refused), 8);
    assert!(one_line(&refused).contains("version 1 of key \"pay\" is disabled"));
    e.ok(&["key", "set-state", "pay", "1", "decrypt-only"], None);
    assert_eq!(dec(&[]).stdout, b"card 4242");
    e.ok(&["key", "set-floors", "pay", "--min-decrypt", "2"], None);
    assert_eq!(code(&dec(&[])), 8);
    e.ok(&["key", "set-floors", "pay", "--min-decrypt", "1"], None);
    let moved = e.ok(&["key", "rewrap", "pay", "--ad", "order 7"], Some(&t1));
    assert!(
        text(moved.clone()).starts_with("vault:v4:"),
        "{}",
        text(moved)
    );
    let show = text(e.ok(&["key", "show", "pay"], None));
    assert!(show.contains("primary\t4"), "{show}");
    assert!(show.contains("  1\tdecrypt-only"), "{show}");
    assert_eq!(
        text(e.ok(&["key", "list"], None)),
        "pay\txchacha20poly1305\tv4 of 4\n"
    );
}

#[test]
fn large_inputs_stream_and_out_files_appear_only_on_success() {
    let e = Env::new();
    e.init();
    e.ok(&["key", "create", "k"], None);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let dir = e.tmp.path();
    let out = dir.join("big.tok");
    let big_path = dir.join("big");
    std::fs::write(&big_path, &big).unwrap();
    for binary in [false, true] {
        let mut args = vec![
            "key",
            "encrypt",
            "k",
            "--in",
            big_path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if binary {
            args.push("--binary");
        }
        e.ok(&args, None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
        let tok = std::fs::read(&out).unwrap();
        assert_eq!(tok.starts_with(b"vault:v1:"), !binary);
        assert_eq!(e.ok(&["key", "decrypt", "k"], Some(&tok)), big);
        // Cut short: refused, and --out is not created.
        let cut = &tok[..tok.len() / 2];
        let plain = dir.join("plain");
        let r = e.run_with(
            &["key", "decrypt", "k", "--out", plain.to_str().unwrap()],
            Some(cut),
            &[],
        );
        assert_eq!(code(&r), 9, "{}", String::from_utf8_lossy(&r.stderr));
        assert!(!plain.exists(), "nothing is written on failure");
    }
}

#[test]
fn signatures_data_keys_and_public_keys() {
    let e = Env::new();
    e.init();
    e.ok(&["key", "create", "ed", "--algorithm", "ed25519"], None);
    e.ok(
        &["key", "create", "mac", "--algorithm", "hmac-sha256"],
        None,
    );
    for k in ["ed", "mac"] {
        let sig = text(e.ok(&["key", "sign", k], Some(b"release 1.0")));
        let sig = sig.trim();
        e.ok(
            &["key", "verify", k, "--signature", sig],
            Some(b"release 1.0"),
        );
        let bad = e.run_with(
            &["key", "verify", k, "--signature", sig],
            Some(b"release 1.1"),
            &[],
        );
        assert_eq!(code(&bad), 9);
        assert!(one_line(&bad).contains("does not verify"));
    }
    let public = text(e.ok(&["key", "public", "ed"], None));
    assert_eq!(public.trim().len(), 64, "{public}");
    assert_eq!(code(&e.run(&["key", "public", "mac"])), 8);

    e.ok(&["key", "create", "env"], None);
    let json = text(e.ok(&["key", "datakey", "env", "--ad", "file 9"], None));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let wrapped = v["wrapped"].as_str().unwrap();
    let plain = e.ok(
        &["key", "decrypt", "env", "--ad", "file 9"],
        Some(wrapped.as_bytes()),
    );
    use base64ct::Encoding;
    assert_eq!(
        base64ct::Base64::encode_string(&plain),
        v["plaintext"].as_str().unwrap()
    );
    let only = text(e.ok(&["key", "datakey", "env", "--wrapped-only"], None));
    assert!(only.starts_with("vault:v1:") && only.lines().count() == 1);
}

#[test]
fn refusals_have_their_own_codes_and_messages() {
    let e = Env::new();
    e.init();
    let past = ["--expires", "2000-01-01T00:00:00Z"];
    let mut args = vec!["key", "create", "k", "--allow", "encrypt,decrypt"];
    args.extend_from_slice(&past);
    assert_eq!(code(&e.run(&args)), 2, "a key that could never be used");
    e.ok(&["key", "create", "k", "--allow", "encrypt,decrypt"], None);
    e.ok(&["key", "set-expiry", "k", "2000-01-01T00:00:00Z"], None);
    let expired = e.run_with(&["key", "encrypt", "k"], Some(b"x"), &[]);
    assert_eq!(code(&expired), 8);
    assert!(one_line(&expired).contains("expired on 2000-01-01"));
    e.ok(&["key", "set-expiry", "k", "never"], None);
    let t = e.ok(&["key", "encrypt", "k"], Some(b"x"));

    let forbidden = e.run(&["key", "datakey", "k"]);
    assert_eq!(code(&forbidden), 8);
    assert!(one_line(&forbidden).contains("does not allow datakey"));
    let loosen = e.run(&[
        "key",
        "set-policy",
        "k",
        "--allow",
        "encrypt,decrypt,datakey",
    ]);
    assert_eq!(code(&loosen), 8);
    assert!(one_line(&loosen).contains("--loosen"));
    e.ok(
        &[
            "key",
            "set-policy",
            "k",
            "--allow",
            "encrypt,decrypt,datakey",
            "--loosen",
        ],
        None,
    );
    assert_eq!(code(&e.run(&["key", "create", "k"])), 7);
    assert_eq!(code(&e.run(&["key", "show", "nope"])), 4);
    assert_eq!(code(&e.run(&["key", "promote", "k", "9"])), 4);
    assert_eq!(
        code(&e.run(&["key", "create", "x", "--algorithm", "rsa"])),
        2
    );
    assert_eq!(code(&e.run(&["key", "create", "x", "--allow", "sign"])), 2);

    e.ok(&["key", "set-state", "k", "1", "compromised"], None);
    let r = e.run_with(&["key", "decrypt", "k"], Some(&t), &[]);
    assert_eq!(code(&r), 8);
    assert!(one_line(&r).contains("--allow-compromised"));
    assert_eq!(
        e.ok(&["key", "decrypt", "k", "--allow-compromised"], Some(&t)),
        b"x"
    );
    e.ok(&["key", "set-state", "k", "1", "active"], None);
    e.ok(&["key", "rotate", "k"], None);
    e.ok(&["key", "destroy", "k", "1"], None);
    let gone = e.run_with(&["key", "decrypt", "k"], Some(&t), &[]);
    assert_eq!(code(&gone), 8);
    assert!(one_line(&gone).contains("was destroyed on"));
    assert_eq!(
        code(&e.run(&["key", "destroy", "k", "2"])),
        8,
        "the primary"
    );

    e.ok(&["key", "create", "other"], None);
    let wrong = e.run_with(&["key", "decrypt", "other"], Some(&t), &[]);
    assert_eq!(code(&wrong), 9);
    assert!(one_line(&wrong).contains("made by another key"));
    let junk = e.run_with(&["key", "decrypt", "k"], Some(b"vault:v1:!!!"), &[]);
    assert_eq!(code(&junk), 9);
    let bad_line = e.run_with(&["key", "rewrap", "k"], Some(b"\nnot a token\n"), &[]);
    assert_eq!(code(&bad_line), 9);
    assert!(one_line(&bad_line).contains("line 2"));
    // Blank lines stay, so output line N answers input line N.
    let t2 = e.ok(&["key", "encrypt", "k"], Some(b"y"));
    let mut list = b"\n".to_vec();
    list.extend_from_slice(&t2);
    e.ok(
        &[
            "key",
            "set-policy",
            "k",
            "--allow",
            "encrypt,decrypt,datakey,rewrap",
            "--loosen",
        ],
        None,
    );
    let out = text(e.ok(&["key", "rewrap", "k"], Some(&list)));
    assert_eq!(out.lines().count(), 2);
    assert!(out.lines().next().unwrap().is_empty());
    // A signature given as text that is not a token is one that does not hold: exit 9.
    for sig in ["garbage", "", "vault:v01:AAAA"] {
        let r = e.run_with(&["key", "verify", "k", "--signature", sig], Some(b"m"), &[]);
        assert_eq!(code(&r), 9, "{sig:?}");
    }
    // Text that is not a token, given where a binary one could be: said so, not "newer".
    let r = e.run_with(&["key", "decrypt", "k"], Some(b"VAULT:v1:AAAA"), &[]);
    assert_eq!(code(&r), 9);
    assert!(one_line(&r).contains("not a token"), "{}", one_line(&r));
}

#[test]
fn due_rotation_from_the_command_line() {
    let e = Env::new();
    e.init();
    e.ok(&["key", "create", "k", "--rotate-every", "1ms"], None);
    e.ok(&["key", "create", "manual"], None);
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(text(e.ok(&["key", "list"], None)).contains("rotation due"));
    let out = e.run(&["key", "rotate", "--due"]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("rotated k to version 2"), "{said}");
    assert!(!said.contains("manual"));
}

#[test]
fn exports_move_keys_and_secrets_between_vaults() {
    use std::ffi::OsStr;
    let a = Env::new();
    a.init();
    let b = Env::new();
    b.init();
    let pass = [("VAULT_EXPORT_PASSPHRASE", OsStr::new("export pass"))];
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    a.ok(&["key", "create", "k"], None);
    a.ok(
        &["key", "create", "sealed-in", "--allow", "encrypt,decrypt"],
        None,
    );
    a.ok(&["set", "db/pw"], Some(b"one"));
    a.ok(&["set", "db/pw"], Some(b"two"));
    let t = a.ok(&["key", "encrypt", "k"], Some(b"secret"));
    let file = a.path("keys.vexp");
    let f = file.to_str().unwrap();
    let mut args = vec!["key", "export", "k", "--out", f];
    args.extend_from_slice(&cheap);
    let out = a.run_with(&args, None, &pass);
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o077,
        0
    );
    // Refused by policy, by name.
    let mut args = vec!["key", "export", "sealed-in", "--out", f];
    args.extend_from_slice(&cheap);
    assert_eq!(code(&a.run_with(&args, None, &pass)), 8);
    // Wrong export passphrase: exit 3; then the real import, and the token opens in vault b.
    let wrong = [("VAULT_EXPORT_PASSPHRASE", OsStr::new("nope"))];
    assert_eq!(code(&b.run_with(&["key", "import", f], None, &wrong)), 3);
    assert!(
        b.run_with(&["key", "import", f], None, &pass)
            .status
            .success()
    );
    assert_eq!(b.ok(&["key", "decrypt", "k"], Some(&t)), b"secret");
    assert_eq!(code(&b.run_with(&["key", "import", f], None, &pass)), 7);
    assert!(
        b.run_with(&["key", "import", f, "--rename", "k2"], None, &pass)
            .status
            .success()
    );
    // A changed file: exit 5.
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len() - 3;
    bytes[n] ^= 1;
    let changed = a.path("changed.vexp");
    std::fs::write(&changed, &bytes).unwrap();
    assert_eq!(
        code(&b.run_with(&["key", "import", changed.to_str().unwrap()], None, &pass)),
        5
    );
    // Secrets, with history, as JSON; every key allowing export comes along with --keys.
    let all = a.path("all.json");
    let mut args = vec![
        "export",
        "--all",
        "--keys",
        "--json",
        "--out",
        all.to_str().unwrap(),
    ];
    args.extend_from_slice(&cheap);
    let out = a.run_with(&args, None, &pass);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("left out key sealed-in"));
    let c = Env::new();
    c.init();
    assert!(
        c.run_with(&["import", all.to_str().unwrap()], None, &pass)
            .status
            .success()
    );
    assert_eq!(c.ok(&["get", "db/pw"], None), b"two");
    assert_eq!(c.ok(&["get", "db/pw", "--version", "1"], None), b"one");
    assert_eq!(c.ok(&["key", "decrypt", "k"], Some(&t)), b"secret");
    // The plaintext form, for --format jsonl.
    let plain = a.path("plain.jsonl");
    let out = a.run(&[
        "export",
        "--all",
        "--plaintext",
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("plaintext"));
    assert_eq!(
        std::fs::read_to_string(&plain).unwrap(),
        "{\"name\":\"db/pw\",\"value\":\"two\"}\n"
    );
}

/// Decryptions racing master-key rotations by another process: a command that finds the key
/// rotated under it starts over with its input from the first byte (the soak found it failing
/// with "the input was already consumed").
#[test]
fn decryptions_racing_master_key_rotations_all_succeed() {
    let e = std::sync::Arc::new(Env::new());
    e.init();
    e.ok(&["key", "create", "k"], None);
    let small = e.ok(&["key", "encrypt", "k"], Some(b"small"));
    let big_plain: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let big = e.ok(&["key", "encrypt", "k", "--binary"], Some(&big_plain));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotator = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let o = e.run(&["rotate-master-key"]);
                assert!(o.status.success() || code(&o) == 6, "{}", stderr(&o));
                n += 1;
            }
            n
        })
    };
    let start = std::time::Instant::now();
    let mut runs = 0;
    while start.elapsed() < std::time::Duration::from_secs(4) {
        for (token, plain) in [(&small, &b"small"[..]), (&big, &big_plain[..])] {
            let o = e.run_with(&["key", "decrypt", "k"], Some(token), &[]);
            if code(&o) == 6 {
                continue;
            }
            assert!(o.status.success(), "run {runs}: {}", stderr(&o));
            assert_eq!(o.stdout, plain);
            runs += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rotations = rotator.join().unwrap();
    assert!(
        rotations > 3 && runs > 3,
        "{rotations} rotations, {runs} decryptions"
    );
}

/// Hostile-pass findings on exports: --out into the vault's own directory is refused (it
/// destroyed the vault), endless input is refused without being read, a dry run reports
/// conflicts, and an export can come from stdin.
#[test]
fn exports_refuse_the_vault_directory_endless_input_and_report_conflicts() {
    use std::ffi::OsStr;
    let e = Env::new();
    e.init();
    let pass = [("VAULT_EXPORT_PASSPHRASE", OsStr::new("export pass"))];
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    e.ok(&["set", "s"], Some(b"v"));
    let log = e.vault_dir().join("log.0");
    let before = std::fs::read(&log).unwrap();
    let mut args = vec!["export", "--all", "--out", log.to_str().unwrap()];
    args.extend_from_slice(&cheap);
    let r = e.run_with(&args, None, &pass);
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    let r = e.run_with(&["key", "create", "k"], None, &[]);
    assert!(r.status.success());
    let header = e.vault_dir().join("header");
    let r = e.run_with(
        &["key", "encrypt", "k", "--out", header.to_str().unwrap()],
        Some(b"x"),
        &[],
    );
    assert_eq!(code(&r), 2);
    // The log only grew (the key's creation): nothing was written over it.
    assert!(std::fs::read(&log).unwrap().starts_with(&before));
    e.ok(&["verify"], None);

    let t = std::time::Instant::now();
    let r = e.run_with(&["import", "/dev/zero"], None, &pass);
    assert_ne!(code(&r), 0);
    assert!(t.elapsed() < std::time::Duration::from_secs(30));

    let file = e.path("all.vexp");
    let mut args = vec!["export", "--all", "--out", file.to_str().unwrap()];
    args.extend_from_slice(&cheap);
    assert!(e.run_with(&args, None, &pass).status.success());
    let dry = e.run_with(
        &["import", file.to_str().unwrap(), "--dry-run"],
        None,
        &pass,
    );
    assert_eq!(code(&dry), 7);
    assert!(stderr(&dry).contains("conflict"));
    let bytes = std::fs::read(&file).unwrap();
    let other = Env::new();
    other.init();
    let r = other.run_with(&["import", "-"], Some(&bytes), &pass);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(other.ok(&["get", "s"], None), b"v");
}
