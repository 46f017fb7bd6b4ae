//! `vault inject`: references replaced byte for byte, other braces left alone; a missing secret
//! or an unterminated reference writes nothing; the output file is owner-only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn templates_are_rendered_whole_or_not_at_all() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "db/password"], Some(b"hun\"ter2"));
    e.ok(&["set", "api-token"], Some(b"t0k\n"));
    let template = b"db: {{ vault:db/password }}\nkeep: {{ not.vault }}\ntoken={{vault:api-token}}|{{  vault:db/password  }}\n";
    let out = e.ok(&["inject"], Some(template));
    assert_eq!(
        out,
        b"db: hun\"ter2\nkeep: {{ not.vault }}\ntoken=t0k\n|hun\"ter2\n"
    );
    // Extra braces are text around the reference, never a reason to skip it.
    let braces = e.ok(&["inject"], Some(b"a={{{ vault:db/password }}}"));
    assert_eq!(braces, b"a={hun\"ter2}");
    std::fs::write(e.path("t.tmpl"), template).unwrap();
    let target = e.path("out.yml");
    e.ok(
        &[
            "inject",
            "-i",
            e.path("t.tmpl").to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(std::fs::read(&target).unwrap(), out);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A missing secret: exit 4, nothing written (the old file stays as it was).
    std::fs::write(
        e.path("bad.tmpl"),
        b"{{ vault:db/password }} {{ vault:missing }}",
    )
    .unwrap();
    let o = e.run(&[
        "inject",
        "-i",
        e.path("bad.tmpl").to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("missing"));
    assert_eq!(std::fs::read(&target).unwrap(), out);
    let o = e.run_with(&["inject"], Some(b"{{ vault:missing }}"), &[]);
    assert_eq!(code(&o), 4);
    assert!(o.stdout.is_empty());
    // Unterminated: a usage error naming the line, before any passphrase is needed.
    let no_pass = [(
        "VAULT_PASSPHRASE_FILE",
        std::ffi::OsStr::new("/nonexistent"),
    )];
    let o = e.run_with(&["inject"], Some(b"a\nb {{ vault:db/password\n"), &no_pass);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    // No reference: the template as it is, no passphrase asked.
    assert_eq!(
        e.run_with(&["inject"], Some(b"plain {{x}}"), &no_pass)
            .stdout,
        b"plain {{x}}"
    );
}
