//! `vault import`: dotenv, JSON and JSON lines from a file or stdin, one commit for all, checked
//! in full first (line-numbered errors that never show a value, nothing written on any error),
//! unchanged values left alone, `--dry-run` writing nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::{Env, code, stderr};

fn get(e: &Env, name: &str) -> Vec<u8> {
    e.ok(&["get", name], None)
}

fn history_len(e: &Env, name: &str) -> usize {
    String::from_utf8(e.ok(&["history", name], None))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn dotenv_from_a_file_and_json_from_stdin() {
    let e = Env::new();
    e.init();
    let file = e.path("app.env");
    std::fs::write(
        &file,
        "# app\nexport DB_PASSWORD='p@ss $word'\nAPI_TOKEN=\"tok\\n\"  # trailing comment\nplain=v\n",
    )
    .unwrap();
    let out = e.run_with(
        &["import", file.to_str().unwrap(), "--format", "dotenv"],
        None,
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 added, 0 changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(get(&e, "DB_PASSWORD"), b"p@ss $word");
    assert_eq!(get(&e, "API_TOKEN"), b"tok\n");
    assert_eq!(get(&e, "plain"), b"v");

    let json = br#"{"plain": "v", "API_TOKEN": "new", "db/url": "postgres://x"}"#;
    let out = e.run_with(&["import", "-", "--format", "json"], Some(json), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 added, 1 changed, 0 restored, 1 unchanged"),
        "{}",
        stderr(&out)
    );
    assert_eq!(get(&e, "API_TOKEN"), b"new");
    assert_eq!(get(&e, "db/url"), b"postgres://x");
    assert_eq!(
        history_len(&e, "plain"),
        1,
        "an unchanged value gets no new version"
    );

    e.ok(&["rm", "plain"], None);
    let lines = b"{\"name\":\"plain\",\"value\":\"back\"}\n{\"name\":\"k2\",\"value\":\"2\"}\n";
    let out = e.run_with(&["import", "-", "--format", "jsonl"], Some(lines), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 added, 0 changed, 1 restored"),
        "{}",
        stderr(&out)
    );
    assert_eq!(get(&e, "plain"), b"back");
}

#[test]
fn any_error_writes_nothing_and_names_lines_not_values() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "keep"], Some(b"original"));
    let cases: [(&str, &[u8], &[&str]); 4] = [
        (
            "dotenv",
            b"keep=hunter2-new\nbad line without equals\nok=1\n",
            &["line 2"],
        ),
        (
            "dotenv",
            b"keep=hunter2-new\nkeep=hunter2-again\n\x07bell=x\n",
            &["line 2", "also on line 1", "line 3", "invalid name"],
        ),
        (
            "json",
            br#"{"keep": "hunter2-new", "n": 42}"#,
            &["line 1", "\"n\""],
        ),
        (
            "jsonl",
            b"{\"name\":\"keep\",\"value\":\"hunter2-new\"}\n{\"name\":\"e\",\"value\":\"\"}\n",
            &["line 2", "empty value"],
        ),
    ];
    for (format, input, expected) in cases {
        let out = e.run_with(&["import", "-", "--format", format], Some(input), &[]);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{format}: {err}");
        for x in expected {
            assert!(err.contains(x), "{format}: {x:?} missing from {err}");
        }
        assert!(!err.contains("hunter2"), "a value leaked: {err}");
        assert!(err.contains("nothing imported"), "{err}");
        assert_eq!(get(&e, "keep"), b"original", "{format}: nothing written");
    }
    assert_eq!(history_len(&e, "keep"), 1);
    // Empty values go in only when asked.
    let out = e.run_with(
        &["import", "-", "--format", "dotenv", "--allow-empty"],
        Some(b"empty=\n"),
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(get(&e, "empty"), b"");
}

#[test]
fn dry_run_lists_names_and_writes_nothing() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "same"], Some(b"s"));
    e.ok(&["set", "changed"], Some(b"old"));
    let input = b"same=s\nchanged=new\nadded=hunter2\n";
    let out = e.run_with(
        &["import", "-", "--format", "dotenv", "--dry-run"],
        Some(input),
        &[],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "change changed\nadd added\n"
    );
    assert!(stderr(&out).contains("nothing written"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"));
    assert_eq!(get(&e, "changed"), b"old");
    assert_eq!(code(&e.run(&["get", "added"])), 4);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let e = Env::new();
    e.init();
    let out = e.run(&["import", "/nonexistent/x.env", "--format", "dotenv"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/x.env"),
        "{}",
        stderr(&out)
    );
}
