//! The storage contract every backend must keep, run against each of them: adding a backend is
//! one more line in `backends()`. The frames here are opaque bytes, as the backend sees them.
//! Cases: creation, reading after a cursor and after a reset, appending at a stale cursor
//! (typed, nothing written), replacing the log, rekey atomicity seen by concurrent readers, lock
//! timeouts between sessions of either kind, concurrent writers, and single records read by
//! place (also by the producer of a new log, from the log it replaces).
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

use vault_store::{
    Appended, Backend, Cursor, Error, FileBackend, MemoryBackend, ReadSession, RecordAt,
    RecordSource, StoredFrame, Tail, Visit,
};

/// Makes a fresh, empty backend, and a second handle on the same storage (as another process
/// would have). The temp directory lives as long as the returned guard.
type Make = fn() -> (Box<dyn std::any::Any>, Arc<dyn Backend>, Arc<dyn Backend>);

fn backends() -> Vec<(&'static str, Make)> {
    #[allow(unused_mut)] // without the postgres feature nothing is pushed
    let mut all: Vec<(&'static str, Make)> = vec![
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
    ];
    #[cfg(feature = "postgres")]
    if pg::server().is_some() {
        all.push(("postgres", pg::make));
    }
    all
}

/// The PostgreSQL backend: one server for the test binary, a fresh vault (schema) per case.
#[cfg(feature = "postgres")]
mod pg {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, OnceLock};

    use vault_store::{Backend, PostgresBackend, PostgresLocation};
    use vault_testkit::PgServer;

    pub(super) fn server() -> Option<&'static PgServer> {
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

    pub(super) fn make() -> (Box<dyn std::any::Any>, Arc<dyn Backend>, Arc<dyn Backend>) {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "c{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let at = PostgresLocation::parse(&server().unwrap().location(&name)).unwrap();
        let a: Arc<dyn Backend> = Arc::new(PostgresBackend::new(at.clone()));
        let b: Arc<dyn Backend> = Arc::new(PostgresBackend::new(at));
        (Box::new(()), a, b)
    }
}

const T: Duration = Duration::from_secs(10);

/// A frame body: arbitrary bytes, long enough to end in 32 distinct bytes (the backend proves
/// cursors by the bytes before them).
fn frame(tag: u8) -> Vec<u8> {
    (0..64u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(tag))
        .collect()
}

type Produced = Option<vault_store::Result<Vec<u8>>>;

/// The frames tagged `tags`, as a backend takes a new log's frames.
#[allow(clippy::unnecessary_to_owned)] // the producer owns its tags, so it borrows nothing
fn new_log(tags: &[u8]) -> impl FnMut(&dyn RecordSource) -> Produced + use<> {
    let mut tags = tags.to_vec().into_iter();
    move |_| tags.next().map(|t| Ok(frame(t)))
}

fn read_in(s: &dyn ReadSession, epoch: u32, since: &Cursor) -> (bool, Vec<Vec<u8>>, Cursor, Tail) {
    let mut frames = Vec::new();
    let out = s
        .read(epoch, since, &mut |f: StoredFrame| {
            frames.push(f.body);
            Ok(Visit::Continue)
        })
        .unwrap();
    (out.reset, frames, out.end, out.tail)
}

fn read_all(b: &dyn Backend, epoch: u32, since: &Cursor) -> (bool, Vec<Vec<u8>>, Cursor, Tail) {
    read_in(&*b.begin_read(T).unwrap(), epoch, since)
}

/// Appends in a write session of its own.
fn append(b: &dyn Backend, at: &Cursor, body: &[u8]) -> Appended {
    b.begin_write(T).unwrap().append(0, at, body).unwrap()
}

fn done(a: Appended) -> Cursor {
    match a {
        Appended::Done(c) => c,
        Appended::Stale => panic!("append was refused as stale"),
    }
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
        assert_eq!(
            b.begin_read(T).unwrap().header().unwrap(),
            b"header v1",
            "{name}"
        );
        let (reset, frames, end, tail) = read_all(b, 0, &Cursor::START);
        assert!(reset, "{name}: a read from nothing starts at the beginning");
        assert_eq!(frames, vec![frame(0)], "{name}");
        assert_eq!(tail, Tail::Clean, "{name}");
        assert!(!b.changed(0, &end).unwrap(), "{name}");
    });
}

#[test]
fn appends_are_seen_from_a_cursor_by_another_handle() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Cursor::START);
        let (_, _, seen_by_b, _) = read_all(b, 0, &Cursor::START);
        let p1 = done(append(a, &start, &frame(1)));
        let p2 = done(append(a, &p1, &frame(2)));
        assert!(b.changed(0, &seen_by_b).unwrap(), "{name}");
        let (reset, frames, end, _) = read_all(b, 0, &seen_by_b);
        assert!(!reset, "{name}: only the new frames");
        assert_eq!(frames, vec![frame(1), frame(2)], "{name}");
        assert_eq!(end, p2, "{name}");
    });
}

#[test]
fn an_append_or_a_cut_at_a_stale_cursor_is_refused() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Cursor::START);
        let p1 = done(append(a, &start, &frame(1)));
        // Another handle appends; `start` is no longer the end.
        done(append(b, &p1, &frame(2)));
        assert_eq!(append(a, &start, &frame(3)), Appended::Stale, "{name}");
        // Another handle replaces the log; cursors into the old one prove nothing.
        b.begin_write(T)
            .unwrap()
            .replace_log(0, &mut new_log(&[7]))
            .unwrap();
        assert_eq!(append(a, &p1, &frame(4)), Appended::Stale, "{name}");
        let _ = a.begin_write(T).unwrap().discard_tail(0, &p1);
        let (reset, frames, _, _) = read_all(a, 0, &p1);
        assert!(reset, "{name}: a replaced log is read from its start");
        assert_eq!(
            frames,
            vec![frame(7)],
            "{name}: nothing stale was written or cut"
        );
    });
}

#[test]
fn a_replaced_log_of_several_frames_is_read_whole_and_appended_to() {
    each(|name, a, b| {
        let (_, _, seen_by_b, _) = read_all(b, 0, &Cursor::START);
        let ends = a
            .begin_write(T)
            .unwrap()
            .replace_log(0, &mut new_log(&[1, 2, 3]))
            .unwrap();
        assert_eq!(ends.len(), 3, "{name}: a cursor after each frame");
        let end = ends[2];
        let (reset, frames, at, tail) = read_all(b, 0, &seen_by_b);
        assert!(reset, "{name}");
        assert_eq!(frames, vec![frame(1), frame(2), frame(3)], "{name}");
        assert_eq!((at, tail), (end, Tail::Clean), "{name}");
        let (_, _, after_first, _) = read_all(b, 0, &Cursor::START);
        let mut firsts = Vec::new();
        b.begin_read(T)
            .unwrap()
            .read(0, &Cursor::START, &mut |f| {
                firsts.push(f.end);
                Ok(Visit::Continue)
            })
            .unwrap();
        assert_eq!(firsts, ends, "{name}: the cursors are those a reader sees");
        assert_eq!(after_first, end, "{name}");
        done(append(b, &end, &frame(4)));
        let (_, frames, _, _) = read_all(a, 0, &end);
        assert_eq!(frames, vec![frame(4)], "{name}");
        assert!(
            a.begin_write(T)
                .unwrap()
                .replace_log(0, &mut new_log(&[]))
                .is_err(),
            "{name}: a log needs a frame"
        );
        // A frame that fails to be produced leaves the log as it was.
        let mut first = new_log(&[5]);
        let mut failed = false;
        let mut failing = |s: &dyn RecordSource| {
            first(s)
                .or_else(|| (!std::mem::replace(&mut failed, true)).then_some(Err(Error::Rekeyed)))
        };
        assert!(
            a.begin_write(T)
                .unwrap()
                .replace_log(0, &mut failing)
                .is_err(),
            "{name}"
        );
        let (_, frames, _, _) = read_all(b, 0, &Cursor::START);
        assert_eq!(
            frames,
            vec![frame(1), frame(2), frame(3), frame(4)],
            "{name}"
        );
    });
}

#[test]
fn a_header_write_is_seen_by_every_handle() {
    each(|name, a, b| {
        a.begin_write(T)
            .unwrap()
            .write_header(b"header v1b")
            .unwrap();
        assert_eq!(b.read_header().unwrap(), b"header v1b", "{name}");
        let (_, frames, _, _) = read_all(b, 0, &Cursor::START);
        assert_eq!(frames, vec![frame(0)], "{name}: the log is untouched");
    });
}

#[test]
fn rekey_switches_header_and_log_together() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Cursor::START);
        done(append(a, &start, &frame(1)));
        let pos = *a
            .begin_write(T)
            .unwrap()
            .rekey(1, &mut new_log(&[8]), b"header v2")
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(b.read_header().unwrap(), b"header v2", "{name}");
        let (_, frames, end, _) = read_all(b, 1, &Cursor::START);
        assert_eq!(frames, vec![frame(8)], "{name}");
        assert_eq!(end, pos, "{name}");
        // The old epoch's log is gone (or refused): nothing can be read or appended there.
        let old = b
            .begin_read(T)
            .unwrap()
            .read(0, &Cursor::START, &mut |_| Ok(Visit::Continue));
        assert!(old.is_err(), "{name}: {old:?}");
        // A write session that finds epoch 1 current may clean up; it keeps the current log.
        let s = a.begin_write(T).unwrap();
        let (_, frames, _, _) = read_in(s.as_ref(), 1, &Cursor::START);
        drop(s);
        assert_eq!(frames, vec![frame(8)], "{name}");
        let (_, frames, _, _) = read_all(b, 1, &Cursor::START);
        assert_eq!(
            frames,
            vec![frame(8)],
            "{name}: cleanup keeps the current log"
        );
    });
}

/// Readers in sessions never see a header of one epoch without its log: a rekey is atomic to
/// them, however they interleave with it.
#[test]
fn concurrent_readers_see_header_and_log_of_one_epoch() {
    for (name, make) in backends() {
        let (_guard, a, b) = make();
        a.create(&0u32.to_le_bytes(), 0, &frame(0)).unwrap();
        let writer = std::thread::spawn(move || {
            for epoch in 1..=20u32 {
                a.begin_write(T)
                    .unwrap()
                    .rekey(epoch, &mut new_log(&[epoch as u8]), &epoch.to_le_bytes())
                    .unwrap();
            }
        });
        let mut seen = 0;
        while seen < 20 {
            let s = b.begin_read(T).unwrap();
            let epoch = u32::from_le_bytes(s.header().unwrap().try_into().unwrap());
            let (_, frames, _, tail) = read_in(s.as_ref(), epoch, &Cursor::START);
            assert_eq!(frames, vec![frame(epoch as u8)], "{name}: epoch {epoch}");
            assert_eq!(tail, Tail::Clean, "{name}");
            seen = epoch;
        }
        writer.join().unwrap();
    }
}

#[test]
fn sessions_exclude_each_other_with_a_timeout_and_end_on_drop() {
    each(|name, a, b| {
        let held = a.begin_write(T).unwrap();
        let r = b.begin_write(Duration::from_millis(50));
        assert!(matches!(r, Err(Error::Busy { .. })), "{name}");
        let r = b.begin_read(Duration::from_millis(50));
        assert!(
            matches!(r, Err(Error::Busy { .. })),
            "{name}: a reader waits for the writer"
        );
        drop(held);
        let reader = b.begin_read(T).unwrap();
        let second = a.begin_read(T).unwrap();
        let r = a.begin_write(Duration::from_millis(50));
        assert!(
            matches!(r, Err(Error::Busy { .. })),
            "{name}: the writer waits for readers"
        );
        drop((reader, second));
        b.begin_write(T).unwrap();
    });
}

#[test]
fn concurrent_writers_in_sessions_lose_nothing() {
    for (name, make) in backends() {
        let (_guard, a, b) = make();
        a.create(b"h", 0, &frame(0)).unwrap();
        let writers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(w, backend)| {
                std::thread::spawn(move || {
                    for i in 0..20u8 {
                        let mut s = backend.begin_write(T).unwrap();
                        let (_, _, end, _) = read_in(s.as_ref(), 0, &Cursor::START);
                        done(s.append(0, &end, &frame(w as u8 * 100 + i + 1)).unwrap());
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let (_, frames, _, tail) = read_all(b.as_ref(), 0, &Cursor::START);
        assert_eq!(frames.len(), 41, "{name}");
        assert_eq!(tail, Tail::Clean, "{name}");
    }
}

/// The place of bytes `from..from + len` of the frame that ends at `end` and is `body_len` long.
fn place(end: &Cursor, body_len: usize, from: usize, len: usize) -> RecordAt {
    RecordAt {
        frame_end: end.offset(),
        back: (body_len - from) as u32,
        len: len as u32,
    }
}

#[test]
fn a_record_is_read_by_its_place_and_a_wrong_place_is_an_error() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Cursor::START);
        let p1 = done(append(a, &start, &frame(1)));
        let p2 = done(append(a, &p1, &frame(2)));
        let s = b.begin_read(T).unwrap();
        assert_eq!(
            s.read_record(0, place(&p1, 64, 10, 20)).unwrap(),
            frame(1)[10..30],
            "{name}"
        );
        assert_eq!(
            s.read_record(0, place(&p2, 64, 0, 64)).unwrap(),
            frame(2),
            "{name}: a whole frame"
        );
        let bad = [
            place(&p2, 64, 60, 8),     // past the end of the frame
            place(&p2, 1 << 20, 0, 8), // before the start of the log
            RecordAt {
                frame_end: p2.offset() + 1000,
                back: 8,
                len: 8,
            }, // past the log
            RecordAt {
                frame_end: 0,
                back: 0,
                len: 0,
            },
            RecordAt {
                frame_end: u64::MAX,
                back: u32::MAX,
                len: u32::MAX,
            },
        ];
        for at in bad {
            let e = s.read_record(0, at).unwrap_err();
            assert!(
                matches!(e, Error::Integrity { .. }),
                "{name}: {at:?}: {e:?}"
            );
        }
        assert!(
            s.read_record(7, place(&p1, 64, 0, 8)).is_err(),
            "{name}: no such epoch"
        );
    });
}

/// Compaction copies live records from the log it replaces: the producer of the new log reads
/// the old one, in full, until the new one is in place.
#[test]
fn the_producer_of_a_new_log_reads_the_old_one() {
    each(|name, a, b| {
        let (_, _, start, _) = read_all(a, 0, &Cursor::START);
        let p1 = done(append(a, &start, &frame(1)));
        let mut copied = 0;
        let mut producer = |src: &dyn RecordSource| {
            copied += 1;
            (copied <= 2).then(|| src.read_record(0, place(&p1, 64, 0, 64)))
        };
        let ends = a
            .begin_write(T)
            .unwrap()
            .replace_log(0, &mut producer)
            .unwrap();
        let (_, frames, _, _) = read_all(b, 0, &Cursor::START);
        assert_eq!(frames, vec![frame(1), frame(1)], "{name}");
        // The places in the new log are those its cursors give.
        let s = b.begin_read(T).unwrap();
        assert_eq!(
            s.read_record(0, place(&ends[1], 64, 0, 64)).unwrap(),
            frame(1),
            "{name}"
        );
        drop(s);
        // And a rekey's producer reads the old epoch.
        let mut once = false;
        let mut producer = |src: &dyn RecordSource| {
            (!std::mem::replace(&mut once, true))
                .then(|| src.read_record(0, place(&ends[0], 64, 0, 64)))
        };
        a.begin_write(T)
            .unwrap()
            .rekey(1, &mut producer, b"header v2")
            .unwrap();
        let (_, frames, _, _) = read_all(b, 1, &Cursor::START);
        assert_eq!(frames, vec![frame(1)], "{name}");
    });
}
