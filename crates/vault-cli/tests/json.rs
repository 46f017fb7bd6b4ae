//! `--json` output: each line one object with exactly the documented fields and types (a
//! schema check per command), for `list`, `history` and `slots`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use common::*;
use serde_json::Value;

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `v` is an object with exactly `fields`, each of the kind named.
fn schema(v: &Value, fields: &[(&str, &str)]) {
    let o = v.as_object().unwrap();
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    want.sort_unstable();
    assert_eq!(keys, want, "{v}");
    for (k, kind) in fields {
        let x = &o[*k];
        let ok = match *kind {
            "string" => x.is_string(),
            "u64" => x.is_u64(),
            "i64" => x.is_i64(),
            "bool" => x.is_boolean(),
            "object" => x.is_object(),
            "object|null" => x.is_object() || x.is_null(),
            "u64|null" => x.is_u64() || x.is_null(),
            "i64|null" => x.is_i64() || x.is_null(),
            "string|null" => x.is_string() || x.is_null(),
            "array" => x.is_array(),
            _ => panic!("unknown kind {kind}"),
        };
        assert!(ok, "{k} is not {kind}: {v}");
    }
}

#[test]
fn list_history_and_slots_as_json() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a", "--tag", "env=prod"], Some(b"1"));
    e.ok(&["set", "a"], Some(b"22"));
    e.ok(&["set", "b"], Some(b"x"));
    e.ok(&["rm", "b"], None);
    let listed = lines(&e.ok(&["list", "--all", "--json"], None));
    assert_eq!(listed.len(), 2);
    for v in &listed {
        schema(
            v,
            &[
                ("name", "string"),
                ("latest", "u64"),
                ("versions", "u64"),
                ("deleted", "bool"),
            ],
        );
    }
    assert_eq!(listed[0]["name"], "a");
    assert_eq!(listed[0]["latest"], 2);
    assert_eq!(listed[1]["deleted"], true);
    let history = lines(&e.ok(&["history", "a", "--json"], None));
    assert_eq!(history.len(), 2);
    for v in &history {
        schema(
            v,
            &[
                ("version", "u64"),
                ("created", "string"),
                ("created_ms", "i64"),
                ("size", "u64"),
                ("tags", "object"),
            ],
        );
    }
    let v1 = history.iter().find(|v| v["version"] == 1).unwrap();
    assert_eq!(v1["tags"]["env"], "prod");
    assert_eq!(v1["size"], 1);
    let slots = lines(&e.ok(&["slots", "--json"], None));
    assert_eq!(slots.len(), 1);
    schema(
        &slots[0],
        &[
            ("id", "u64"),
            ("kind", "u64"),
            ("member", "string|null"),
            ("kdf", "object|null"),
            ("in_use", "bool"),
        ],
    );
    schema(
        &slots[0]["kdf"],
        &[
            ("memory_kib", "u64"),
            ("iterations", "u64"),
            ("lanes", "u64"),
        ],
    );
    assert_eq!(slots[0]["in_use"], true);
}

#[test]
fn verify_and_key_list_as_json() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    e.ok(&["key", "create", "payments"], None);
    let v: Value = serde_json::from_slice(&e.ok(&["verify", "--json"], None)).unwrap();
    schema(
        &v,
        &[
            ("ok", "bool"),
            ("frames", "u64"),
            ("records", "u64"),
            ("generation", "u64"),
            ("recorded_generation", "u64|null"),
            ("secrets", "u64"),
            ("keys", "u64"),
            ("reclaimable_bytes", "u64"),
            ("index_secrets", "u64|null"),
            ("torn_tail", "bool"),
            ("warnings", "array"),
        ],
    );
    assert_eq!(v["secrets"], 1);
    assert_eq!(v["keys"], 1);
    let keys = lines(&e.ok(&["key", "list", "--json"], None));
    assert_eq!(keys.len(), 1);
    schema(
        &keys[0],
        &[
            ("name", "string"),
            ("algorithm", "string"),
            ("primary", "u64"),
            ("versions", "u64"),
            ("rotation_due", "bool"),
        ],
    );
    assert_eq!(keys[0]["name"], "payments");

    e.ok(&["key", "rotate", "payments"], None);
    let shown = lines(&e.ok(&["key", "show", "payments", "--json"], None));
    assert_eq!(shown.len(), 1);
    let k = &shown[0];
    schema(
        k,
        &[
            ("name", "string"),
            ("algorithm", "string"),
            ("key_id", "string"),
            ("primary", "u64"),
            ("allows", "array"),
            ("min_decrypt_version", "u64"),
            ("min_encrypt_version", "u64"),
            ("expires", "string|null"),
            ("expires_ms", "i64|null"),
            ("rotate_every_ms", "u64|null"),
            ("rotation_due", "bool"),
            ("created", "string"),
            ("created_ms", "i64"),
            ("changed", "string"),
            ("changed_ms", "i64"),
            ("versions", "array"),
        ],
    );
    assert_eq!(k["primary"], 2);
    assert_eq!(k["key_id"].as_str().unwrap().len(), 16);
    assert!(k["allows"].as_array().unwrap().contains(&"encrypt".into()));
    let versions = k["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    for v in versions {
        schema(
            v,
            &[
                ("version", "u64"),
                ("state", "string"),
                ("primary", "bool"),
                ("created", "string"),
                ("created_ms", "i64"),
                ("changed", "string"),
                ("changed_ms", "i64"),
            ],
        );
    }
    assert_eq!(versions[0]["primary"], false);
    assert_eq!(versions[1]["primary"], true);
    assert_eq!(versions[1]["state"], "active");
}
