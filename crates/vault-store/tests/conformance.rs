//! The storage contract every backend must keep, run against each of them: adding a backend is
//! one more line in `backends()`. The frames here are opaque bytes, as the backend sees them.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::sync::Arc;
use std::time::Duration;

use vault_store::{Backend, Error, FileBackend, MemoryBackend, Position, StoredFrame, Tail, Visit};

/// Makes a fresh, empty backend, and a second handle on the same storage (as another process
/// would have). The temp directory lives as long as the returned guard.
type Make = fn() -> (Box<dyn std::any::Any>, Arc<dyn Backend>, Arc<dyn Backend>);

fn backends() -> Vec<(&'static str, Make)> {
    vec![
        ("file", || {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("vault");
            let a: Arc<dyn Backend> = Arc::new(FileBackend::new(&dir));
            let b: Arc<dyn Backend> = Arc::new(FileBackend::new(&dir));
            (Box::new(tmp), a, b)
        }),
        ("memory", || {
            let m = MemoryBackend::new();
            let a: Arc<dyn Backend> = Arc::new(m.clone());
            let b: Arc<dyn Backend> = Arc::new(m);
            (Box::new(()), a, b)
        }),
    ]
}

/// A frame body: arbitrary bytes, long enough to end in 32 distinct bytes (the backend proves
/// positions by the bytes before them).
fn frame(tag: u8) -> Vec<u8> {
    (0..64u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(tag))
        .collect()
}

fn read_all(b: &dyn Backend, epoch: u32, since: &Position) -> (bool, Vec<Vec<u8>>, Position, Tail) {
    let mut frames = Vec::new();
    let out = b
        .read(epoch, since, &mut |f: StoredFrame| {
            frames.push(f.body);
            Ok(Visit::Continue)
        })
        .unwrap();
    (out.reset, frames, out.end, out.tail)
}

fn each(case: impl Fn(&str, &dyn Backend, &dyn Backend)) {
    for (name, make) in backends() {
        let (_guard, a, b) = make();
        a.create(b"header v1", 0, &frame(0)).unwrap();
        case(name, a.as_ref(), b.as_ref());
    }
}

#[test]
fn creation_is_once_and_reads_back() {
    each(|name, a, b| {
        assert!(a.exists().unwrap(), "{name}");
        assert!(matches!(
            b.create(b"other", 0, &frame(9)),
            Err(Error::AlreadyExists(_))
        ));
        assert_eq!(b.read_header().unwrap(), b"header v1", "{name}");
        let (reset, frames, end, tail) = read_all(b, 0, &Position::default());
        assert!(reset, "{name}: a read from nothing starts at the beginning");
        assert_eq!(frames, vec![frame(0)], "{name}");
        assert_eq!(tail, Tail::Clean, "{name}");
        assert!(!b.changed(0, &end).unwrap(), "{name}");
    });
}

#[test]
fn appends_are_seen_from_a_position_by_another_handle() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Position::default());
        let (_, _, seen_by_b, _) = read_all(b, 0, &Position::default());
        let p1 = a.append(0, &start, &frame(1)).unwrap();
        let p2 = a.append(0, &p1, &frame(2)).unwrap();
        assert!(b.changed(0, &seen_by_b).unwrap(), "{name}");
        let (reset, frames, end, _) = read_all(b, 0, &seen_by_b);
        assert!(!reset, "{name}: only the new frames");
        assert_eq!(frames, vec![frame(1), frame(2)], "{name}");
        assert_eq!(end, p2, "{name}");
    });
}

#[test]
fn an_append_or_a_cut_at_a_stale_position_is_refused() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Position::default());
        let p1 = a.append(0, &start, &frame(1)).unwrap();
        // Another handle appends; `start` is no longer the end.
        b.append(0, &p1, &frame(2)).unwrap();
        assert!(a.append(0, &start, &frame(3)).is_err(), "{name}");
        // Another handle replaces the log; positions into the old one prove nothing.
        b.replace(0, &frame(7)).unwrap();
        assert!(a.append(0, &p1, &frame(4)).is_err(), "{name}");
        let _ = a.truncate(0, &p1);
        let (reset, frames, _, _) = read_all(a, 0, &p1);
        assert!(reset, "{name}: a replaced log is read from its start");
        assert_eq!(frames, vec![frame(7)], "{name}");
    });
}

#[test]
fn rekey_switches_header_and_log_together() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Position::default());
        a.append(0, &start, &frame(1)).unwrap();
        let pos = a.rekey(1, &frame(8), b"header v2").unwrap();
        assert_eq!(b.read_header().unwrap(), b"header v2", "{name}");
        let (_, frames, end, _) = read_all(b, 1, &Position::default());
        assert_eq!(frames, vec![frame(8)], "{name}");
        assert_eq!(end, pos, "{name}");
        // The old epoch's log is gone (or refused): nothing can be read or appended there.
        let old = b.read(0, &Position::default(), &mut |_| Ok(Visit::Continue));
        assert!(old.is_err(), "{name}: {old:?}");
        a.cleanup(1).unwrap();
        let (_, frames, _, _) = read_all(b, 1, &Position::default());
        assert_eq!(
            frames,
            vec![frame(8)],
            "{name}: cleanup keeps the current log"
        );
    });
}

#[test]
fn the_writer_lock_times_out_and_is_released_on_drop() {
    each(|name, a, b| {
        let held = a.lock_exclusive(Duration::from_secs(1)).unwrap();
        let r = b.lock_exclusive(Duration::from_millis(50));
        assert!(matches!(r, Err(Error::Busy { .. })), "{name}");
        drop(held);
        b.lock_exclusive(Duration::from_secs(1)).unwrap();
    });
}

#[test]
fn concurrent_writers_under_the_lock_lose_nothing() {
    for (name, make) in backends() {
        let (_guard, a, b) = make();
        a.create(b"h", 0, &frame(0)).unwrap();
        let writers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(w, backend)| {
                std::thread::spawn(move || {
                    for i in 0..20u8 {
                        let _lock = backend.lock_exclusive(Duration::from_secs(10)).unwrap();
                        let (_, _, end, _) = read_all(backend.as_ref(), 0, &Position::default());
                        backend
                            .append(0, &end, &frame(w as u8 * 100 + i + 1))
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let (_, frames, _, tail) = read_all(b.as_ref(), 0, &Position::default());
        assert_eq!(frames.len(), 41, "{name}");
        assert_eq!(tail, Tail::Clean, "{name}");
    }
}
