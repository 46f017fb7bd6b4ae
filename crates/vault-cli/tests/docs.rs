//! Completions and man pages come from the parser's own definitions: every shell's script names
//! the commands, and a page is written for the program and each command.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use common::*;

#[test]
fn completions_and_man_pages() {
    let e = Env::new();
    for (shell, marker) in [
        ("bash", "_vault()"),
        ("zsh", "#compdef vault"),
        ("fish", "complete -c vault"),
    ] {
        let out = String::from_utf8(e.ok(&["completions", shell], None)).unwrap();
        assert!(
            out.contains(marker),
            "{shell}: {}",
            &out[..out.len().min(200)]
        );
        for command in ["unlock", "audit", "rotate-master-key"] {
            assert!(out.contains(command), "{shell} lacks {command}");
        }
        // Hidden commands stay hidden.
        assert!(!out.contains("agent-serve"), "{shell}");
    }
    assert_eq!(code(&e.run(&["completions", "tcsh"])), 2);
    let dir = e.path("man");
    e.ok(&["man-pages", dir.to_str().unwrap()], None);
    for page in [
        "vault.1",
        "vault-get.1",
        "vault-unlock.1",
        "vault-key-encrypt.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    assert!(!dir.join("vault-agent-serve.1").exists());
}
