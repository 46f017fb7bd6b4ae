//! The audit after every worker has stopped: the vault must verify, its audit trail must verify
//! (every process appended to it concurrently), every name must read back as its ledger says,
//! and `list` must show exactly the live names. Nothing else runs now, so busy (exit 6) is a
//! failure here too.

use std::collections::BTreeSet;
use std::time::Instant;

use super::child::{Input, NewPassphrase, Outcome, VaultCmd};
use super::ledger::{Ledger, NAMES};
use super::report::{Problem, Stats};
use super::worker::{GetVerdict, check_get, check_list, check_verify};

pub fn audit(vault: &VaultCmd, ledgers: &[Ledger], start: Instant) -> Stats {
    let mut stats = Stats::default();
    let run = |stats: &mut Stats, label: &'static str, args: &[&str]| -> Outcome {
        let o = vault.run(args, Input::Nothing, NewPassphrase::Same);
        stats.count(label, &o);
        o
    };
    let fail = |stats: &mut Stats, problem, args: &[&str], o: &Outcome, detail: String| {
        let command = format!("vault {}", args.join(" "));
        stats.fail(problem, start.elapsed(), None, command, o, detail);
    };

    let o = run(&mut stats, "final verify", &["verify"]);
    stats.final_verify = Some(match o.stdout_text().lines().next() {
        Some(line) if o.is(0) => line.to_string(),
        _ => format!("FAILED, {}: {}", o.status(), o.stderr.trim()),
    });
    if o.is(6) {
        let detail = "busy with no writer running".into();
        fail(&mut stats, Problem::Unexpected, &["verify"], &o, detail);
    } else if let Some(detail) = check_verify(&o) {
        fail(&mut stats, Problem::Unexpected, &["verify"], &o, detail);
    }

    let o = run(&mut stats, "final audit verify", &["audit", "verify"]);
    stats.final_audit = Some(match o.stdout_text().lines().next() {
        Some(line) if o.is(0) => line.to_string(),
        _ => format!("FAILED, {}: {}", o.status(), o.stderr.trim()),
    });
    if !o.is(0) {
        let detail = "the audit trail does not verify".into();
        fail(
            &mut stats,
            Problem::Unexpected,
            &["audit", "verify"],
            &o,
            detail,
        );
    }

    for ledger in ledgers {
        for k in 0..NAMES {
            let name = ledger.own_name(k);
            let args = ["get", name.as_str()];
            let o = run(&mut stats, "final get", &args);
            match check_get(&mut stats, ledger, k, &o) {
                None => {}
                Some(GetVerdict::Lost(d)) => fail(&mut stats, Problem::Lost, &args, &o, d),
                // At the end, a name whose acknowledged writes cannot be read back (the vault
                // is damaged) has lost them, whatever the exit code says.
                Some(GetVerdict::Unexpected) if ledger.acked(k) => {
                    stats.checked += 1;
                    let detail = "its acknowledged writes cannot be read back".into();
                    fail(&mut stats, Problem::Lost, &args, &o, detail);
                }
                Some(GetVerdict::Unexpected) => {
                    fail(&mut stats, Problem::Unexpected, &args, &o, String::new())
                }
            }
        }
    }

    for (all, label, args) in [
        (false, "final list", &["list"][..]),
        (true, "final list --all", &["list", "--all"][..]),
    ] {
        let o = run(&mut stats, label, args);
        if !o.is(0) {
            fail(&mut stats, Problem::Unexpected, args, &o, String::new());
            continue;
        }
        let stdout = o.stdout_text();
        for ledger in ledgers {
            let (checked, wrong) = check_list(ledger, &stdout, all);
            stats.checked += checked;
            for (_, detail) in wrong {
                fail(&mut stats, Problem::Lost, args, &o, detail);
            }
        }
        // Nothing but the workers' names may appear.
        let known: BTreeSet<String> = ledgers
            .iter()
            .flat_map(|l| (0..NAMES).map(move |k| l.own_name(k)))
            .collect();
        for line in stdout.lines() {
            let name = line.split('\t').next().unwrap_or(line);
            if !known.contains(name) {
                let detail = format!("lists {name:?}, which no worker ever wrote");
                fail(&mut stats, Problem::Unexpected, args, &o, detail);
            }
        }
    }
    stats
}
