//! The recovery log and session store, with a fake clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::engineio::Text;

fn packet(text: &str) -> Outgoing {
    Outgoing {
        text: Text::framed_message(text),
        attachments: Vec::new(),
    }
}

fn to(rooms: &[&str]) -> Arc<LoggedTarget> {
    Arc::new(LoggedTarget {
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        except: Vec::new(),
        local_only: false,
    })
}

fn texts<P: std::borrow::Borrow<Outgoing>>(packets: &[P]) -> Vec<String> {
    packets
        .iter()
        .map(|p| p.borrow().text.to_string())
        .collect()
}

/// The packets of a log's answer, without their offsets.
fn packets(missed: Vec<(Offset, Outgoing)>) -> Vec<Outgoing> {
    missed.into_iter().map(|(_, p)| p).collect()
}

const WINDOW: Duration = Duration::from_secs(10);

#[test]
fn offsets_read_back_and_refuse_what_was_never_written() {
    let offset = Offset::new(3, 0x1f);
    assert_eq!(offset.to_string(), "1f-3");
    assert_eq!(Offset::parse("1f-3"), Some(offset));
    assert_eq!(
        Offset::parse(&Offset::new(4095, 1 << 40).to_string()),
        Some(Offset::new(4095, 1 << 40))
    );
    for bad in [
        "",
        "1f",
        "-3",
        "1f-",
        "0-0",
        "zz-1",
        "1-1000",
        "1-fff0",
        "12345678901234-0",
        "1f-3-4",
    ] {
        assert_eq!(Offset::parse(bad), None, "{bad}");
    }
}

#[test]
fn missed_packets_are_those_after_the_offset_that_match_the_rooms() {
    let now = Instant::now();
    let mut log = RecoveryLog::new(WINDOW, 1 << 20);
    let _ = log.push(0, Offset::new(0, 1), now, to(&["a"]), packet("one"));
    let _ = log.push(0, Offset::new(1, 1), now, to(&["a"]), packet("two"));
    let _ = log.push(0, Offset::new(0, 2), now, to(&["b"]), packet("three"));
    let _ = log.push(0, Offset::new(0, 3), now, to(&[]), packet("four"));
    let except = Arc::new(LoggedTarget {
        rooms: vec!["a".into()],
        except: vec!["me".into()],
        local_only: false,
    });
    let _ = log.push(0, Offset::new(1, 2), now, except, packet("five"));
    let rooms = ["me", "a"];
    let missed = log
        .missed_after(Offset::new(0, 1), rooms.iter().copied(), None)
        .expect("held");
    // "three" is for room b; "five" left the socket out.
    assert_eq!(texts(&packets(missed)), ["two", "four"]);
    let none = log
        .missed_after(Offset::new(1, 2), rooms.iter().copied(), None)
        .expect("held");
    assert!(none.is_empty());
    assert_eq!(
        log.missed_after(Offset::new(0, 9), rooms.iter().copied(), None)
            .err(),
        Some(LogMiss::Offset)
    );
}

#[test]
fn the_window_purges_from_the_front() {
    let start = Instant::now();
    let mut log = RecoveryLog::new(WINDOW, 1 << 20);
    let _ = log.push(0, Offset::new(0, 1), start, to(&[]), packet("old"));
    let _ = log.push(
        1,
        Offset::new(0, 2),
        start + Duration::from_secs(6),
        to(&[]),
        packet("new"),
    );
    let held = log.bytes();
    let change = log.purge(start + WINDOW);
    assert_eq!(change, 0, "nothing older than the window yet");
    let change = log.purge(start + WINDOW + Duration::from_millis(1));
    assert!(change < 0);
    assert_eq!(log.bytes() as isize, held as isize + change);
    assert_eq!(log.len(), 1);
    // The client that read "old" is past the window: fresh session.
    assert_eq!(
        log.missed_after(Offset::new(0, 1), ["x"].into_iter(), None)
            .err(),
        Some(LogMiss::Offset)
    );
    let change = log.purge(start + Duration::from_secs(17));
    assert!(change < 0);
    assert!(log.is_empty());
    assert_eq!(log.bytes(), 0);
}

#[test]
fn the_budget_evicts_the_oldest_and_never_gives_a_partial_replay() {
    let now = Instant::now();
    let big = "x".repeat(1000);
    let mut log = RecoveryLog::new(WINDOW, 3500);
    for seq in 1..=3 {
        let _ = log.push(0, Offset::new(0, seq), now, to(&[]), packet(&big));
    }
    assert_eq!(log.len(), 3);
    assert!(log.bytes() <= 3500);
    let _ = log.push(0, Offset::new(0, 4), now, to(&[]), packet(&big));
    assert_eq!(log.len(), 3, "the oldest went for the budget");
    assert!(log.bytes() <= 3500);
    assert_eq!(
        log.missed_after(Offset::new(0, 1), ["r"].into_iter(), None)
            .err(),
        Some(LogMiss::Offset)
    );
    // Held offsets keep everything after them.
    assert_eq!(
        log.missed_after(Offset::new(0, 2), ["r"].into_iter(), None)
            .expect("held")
            .len(),
        2
    );
    // A single packet over the budget is not kept at all.
    let mut small = RecoveryLog::new(WINDOW, 100);
    let change = small.push(0, Offset::new(0, 1), now, to(&[]), packet(&big));
    assert_eq!(change, 0);
    assert!(small.is_empty());
}

#[test]
fn the_cut_replays_what_the_answering_shard_had_not_seen() {
    let now = Instant::now();
    // The answering shard (T) had origin 0 up to 2 and origin 1 up to 1.
    let mut t = RecoveryLog::new(WINDOW, 1 << 20);
    let _ = t.push(0, Offset::new(0, 1), now, to(&["r"]), packet("a"));
    let _ = t.push(0, Offset::new(0, 2), now, to(&["r"]), packet("b"));
    let _ = t.push(0, Offset::new(1, 1), now, to(&["r"]), packet("c"));
    let cut = t.cut();
    assert_eq!(cut, [2, 1]);
    // The restoring shard (S) got them in another interleaving, and more
    // from each origin that T had not had when it answered.
    let mut s = RecoveryLog::new(WINDOW, 1 << 20);
    let _ = s.push(0, Offset::new(1, 1), now, to(&["r"]), packet("c"));
    let _ = s.push(0, Offset::new(0, 1), now, to(&["r"]), packet("a"));
    let _ = s.push(0, Offset::new(1, 2), now, to(&["r"]), packet("d"));
    let _ = s.push(0, Offset::new(0, 2), now, to(&["r"]), packet("b"));
    let _ = s.push(
        0,
        Offset::new(0, 3),
        now,
        to(&["other"]),
        packet("not-mine"),
    );
    let _ = s.push(0, Offset::new(2, 1), now, to(&["r"]), packet("e"));
    let _ = s.push(0, Offset::new(0, 4), now, to(&["r"]), packet("f"));
    let replay = s
        .replay_above(&cut, ["id", "r"].into_iter())
        .expect("all held");
    assert_eq!(texts(&replay), ["d", "e", "f"]);
    // Once S evicted an entry above the cut, the restore must fail.
    let mut tight = RecoveryLog::new(WINDOW, 1 << 20);
    let _ = tight.push(0, Offset::new(0, 3), now, to(&["r"]), packet("g"));
    tight.budget_for_test(0);
    let _ = tight.push(0, Offset::new(0, 4), now, to(&["r"]), packet("h"));
    assert_eq!(
        tight.replay_above(&cut, ["r"].into_iter()).err(),
        Some(LogMiss::Buffer)
    );
    // Evictions at or below the cut do not matter.
    let mut below = RecoveryLog::new(WINDOW, 1 << 20);
    let _ = below.push(0, Offset::new(0, 2), now, to(&["r"]), packet("b"));
    below.budget_for_test(0);
    let _ = below.push(0, Offset::new(0, 2), now, to(&["r"]), packet("b"));
    assert!(below.replay_above(&cut, ["r"].into_iter()).is_ok());
}

#[test]
fn attachments_count_in_the_budget() {
    let now = Instant::now();
    let mut log = RecoveryLog::new(WINDOW, 1 << 20);
    let mut with = packet("b");
    with.attachments.push(Bytes::from(vec![0u8; 5000]));
    let grew = log.push(0, Offset::new(0, 1), now, to(&[]), with);
    assert!(grew >= 5000, "{grew}");
}

fn session(pid: &str, at: Instant) -> KeptSession {
    KeptSession {
        sid: format!("sid-{pid}"),
        pid: pid.to_string(),
        nsp: "/".to_string(),
        rooms: vec![format!("sid-{pid}"), "room".to_string()],
        data: Some(Arc::new(7u32)),
        disconnected_at: at,
        resume: None,
    }
}

#[test]
fn sessions_are_taken_once_within_the_window() {
    let start = Instant::now();
    let mut store = SessionStore::new(WINDOW, 10);
    assert!(store.keep(session("p1", start), start).is_empty());
    assert!(store.keep(session("p2", start), start).is_empty());
    let Ok(taken) = store.take("p1", start + WINDOW) else {
        panic!("within the window");
    };
    assert_eq!(taken.rooms, ["sid-p1", "room"]);
    let data = taken.data.expect("data").downcast::<u32>().expect("a u32");
    assert_eq!(*data, 7);
    assert!(matches!(
        store.take("p1", start),
        Err((SessionMiss::Unknown, None))
    ));
    // An expired one comes back with the miss: its ids are to be forgotten.
    match store.take("p2", start + WINDOW + Duration::from_millis(1)) {
        Err((SessionMiss::Expired, Some((_, pid)))) => assert_eq!(pid, "p2"),
        _ => panic!("p2 expired"),
    }
    assert_eq!(
        store.len(),
        0,
        "an expired session is dropped when asked for"
    );
}

#[test]
fn expired_sessions_are_purged_and_the_bound_drops_the_oldest() {
    let start = Instant::now();
    let mut store = SessionStore::new(WINDOW, 2);
    let _ = store.keep(session("a", start), start);
    let later = start + Duration::from_secs(5);
    let _ = store.keep(session("b", later), later);
    let gone = store.keep(session("c", later), later);
    assert_eq!(
        gone.iter().map(|s| s.pid.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(store.len(), 2);
    // A taken session's place in the order is skipped by the purge.
    assert!(store.take("b", later).is_ok());
    let gone = store.purge(later + WINDOW + Duration::from_millis(1));
    assert_eq!(
        gone.iter().map(|s| s.pid.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert_eq!(store.len(), 0);
    // The purge stops at the first session inside the window.
    let now = later + WINDOW * 2;
    let _ = store.keep(session("d", now), now);
    let _ = store.keep(session("e", now + WINDOW), now + WINDOW);
    let gone = store.purge(now + WINDOW + Duration::from_millis(1));
    assert_eq!(
        gone.iter().map(|s| s.pid.as_str()).collect::<Vec<_>>(),
        ["d"]
    );
    assert!(store.contains("e"));
}

#[test]
fn recoverable_reasons_are_socket_ios() {
    assert!(recoverable(DisconnectReason::TransportClose));
    assert!(recoverable(DisconnectReason::TransportError));
    assert!(recoverable(DisconnectReason::PingTimeout));
    assert!(recoverable(DisconnectReason::ForcedClose));
    assert!(recoverable(DisconnectReason::ServerShuttingDown));
    assert!(recoverable(DisconnectReason::ForcedServerClose));
    assert!(!recoverable(DisconnectReason::ClientNamespaceDisconnect));
    assert!(!recoverable(DisconnectReason::ServerNamespaceDisconnect));
    assert!(!recoverable(DisconnectReason::ParseError));
}

#[test]
fn the_shard_budget_evicts_the_oldest_packet_of_any_namespace() {
    let t0 = Instant::now();
    let weight = {
        let mut log = RecoveryLog::new(WINDOW, 1 << 20);
        log.push(0, Offset::new(0, 1), t0, to(&["a"]), packet("xxxxxxxx")) as usize
    };
    // Room for three entries on the shard, each namespace's own budget larger.
    let shard = RecoveryShard::new(
        RecoveryConfig {
            window: WINDOW,
            buffer_bytes: 1 << 20,
            shard_buffer_bytes: 3 * weight,
            ..RecoveryConfig::default()
        },
        0,
    );
    let at = |ms| t0 + Duration::from_millis(ms);
    shard.log_at(
        at(1),
        "/a",
        Offset::new(0, 1),
        to(&["r"]),
        packet("xxxxxxx1"),
    );
    shard.log_at(
        at(2),
        "/b",
        Offset::new(0, 2),
        to(&["r"]),
        packet("xxxxxxx2"),
    );
    shard.log_at(
        at(3),
        "/a",
        Offset::new(0, 3),
        to(&["r"]),
        packet("xxxxxxx3"),
    );
    assert_eq!(shard.bytes_held(), 3 * weight);
    // A fourth, in /b: over the budget, the oldest go, whichever log
    // holds them, down to 7/8 of it: /a's first, then /b's first.
    shard.log_at(
        at(4),
        "/b",
        Offset::new(0, 4),
        to(&["r"]),
        packet("xxxxxxx4"),
    );
    assert_eq!(shard.bytes_held(), 2 * weight);
    let logs = shard.logs.borrow();
    assert_eq!(
        logs.values().map(RecoveryLog::bytes).sum::<usize>(),
        shard.bytes_held(),
        "the shard's count is its logs' sum"
    );
    let rooms = ["r"];
    assert_eq!(
        logs["/a"]
            .missed_after(Offset::new(0, 1), rooms.iter().copied(), None)
            .err(),
        Some(LogMiss::Offset),
        "the evicted offset is no longer held"
    );
    assert_eq!(
        texts(&packets(
            logs["/a"]
                .missed_after(Offset::new(0, 3), rooms.iter().copied(), None)
                .unwrap()
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        logs["/b"]
            .missed_after(Offset::new(0, 2), rooms.iter().copied(), None)
            .err(),
        Some(LogMiss::Offset),
        "the second oldest went too"
    );
    assert_eq!(
        texts(&packets(
            logs["/b"]
                .missed_after(Offset::new(0, 4), rooms.iter().copied(), None)
                .unwrap()
        )),
        Vec::<String>::new()
    );
    // A replay above a cut below the evicted entry cannot be whole.
    assert_eq!(
        logs["/a"].replay_above(&[0], rooms.iter().copied()).err(),
        Some(LogMiss::Buffer)
    );
}

#[test]
fn sessions_taken_back_often_do_not_grow_the_keeping_order() {
    let start = Instant::now();
    let mut store = SessionStore::new(WINDOW, 4);
    // The same socket drops and comes back 100 times within the window.
    for i in 0..100u64 {
        let at = start + Duration::from_millis(i);
        let _ = store.keep(session("p", at), at);
        assert!(store.take("p", at).is_ok());
    }
    assert!(
        store.order_len() <= 2 * 4,
        "{} places kept for at most 4 sessions",
        store.order_len()
    );
}

#[test]
fn a_restored_socket_skips_live_broadcasts_at_or_below_its_cut() {
    let shard = RecoveryShard::new(RecoveryConfig::default(), 1);
    assert!(!shard.any_cut());
    // Restored with a cut naming origin 0 up to 5 and origin 2 up to 9.
    let resume = |cut: &[u64]| Resume {
        from: 0,
        cut: cut.into(),
        answer: Vec::new().into(),
    };
    shard.skip_through(7, resume(&[5, 0, 9]));
    assert!(shard.any_cut());
    assert!(shard.covered(7, Offset::new(0, 5)), "in the answer already");
    assert!(!shard.covered(7, Offset::new(0, 6)), "after the cut: live");
    assert!(
        !shard.covered(7, Offset::new(1, 1)),
        "origin 1: nothing cut"
    );
    assert!(shard.covered(7, Offset::new(2, 9)));
    assert!(
        !shard.covered(7, Offset::new(3, 1)),
        "an origin past the cut's end"
    );
    assert!(!shard.covered(8, Offset::new(0, 1)), "another socket");
    // A cut of nothing covers nothing; a socket that leaves is forgotten.
    shard.skip_through(8, resume(&[0, 0, 0]));
    assert!(!shard.covered(8, Offset::new(0, 1)));
    assert_eq!(shard.resume_of(7), Some(resume(&[5, 0, 9])));
    shard.forget_cut(7);
    shard.forget_cut(8);
    assert!(!shard.any_cut());
}

fn local(rooms: &[&str]) -> Arc<LoggedTarget> {
    Arc::new(LoggedTarget {
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        except: Vec::new(),
        local_only: true,
    })
}

#[test]
fn a_socket_emit_kept_on_one_shard_is_not_replayed_above_another_shards_cut() {
    // Shard 1's log: an old `socket.emit` to X (kept here only, from when
    // X lived here), then nothing. X comes back here from shard 0, whose
    // cut says nothing of shard 1's emits: the old emit is not X's to get
    // again, nor does its eviction fail a restore.
    let now = Instant::now();
    let mut log = RecoveryLog::new(WINDOW, 1 << 20);
    let _ = log.push(0, Offset::new(1, 1), now, local(&["X"]), packet("old-emit"));
    let replay = log.replay_above(&[1, 0], ["X"].into_iter()).unwrap();
    assert_eq!(texts(&replay), Vec::<String>::new());
    assert_eq!(log.cut(), Vec::<u64>::new(), "a local entry raises no cut");
    log.budget_for_test(0);
    let _ = log.push(
        1,
        Offset::new(1, 2),
        now,
        local(&["X"]),
        packet("newer-emit"),
    );
    assert!(log.is_empty());
    assert!(
        log.replay_above(&[1, 0], ["X"].into_iter()).is_ok(),
        "evicting local entries fails no restore"
    );
}

#[test]
fn a_restore_from_a_log_follows_what_the_socket_got_since_its_last_restore() {
    // X was restored on this shard from shard 0's answer, which held B then
    // A (shard 0's order); this log had them as A then B. Then C came live.
    let now = Instant::now();
    let mut log = RecoveryLog::new(WINDOW, 1 << 20);
    let a = Offset::new(1, 1);
    let b = Offset::new(2, 1);
    let _ = log.push(0, a, now, to(&["r"]), packet("A"));
    let _ = log.push(1, b, now, to(&["r"]), packet("B"));
    let resume = Resume {
        from: 2,
        cut: vec![0, 1, 1].into(),
        answer: Vec::new().into(),
    };
    let c = Offset::new(1, 2);
    let _ = log.push(2, c, now, to(&["r"]), packet("C"));
    // A late copy of a packet the answer held (at or below the cut) is
    // logged here after the restore; it was not delivered live.
    let late = Offset::new(0, 1);
    let mut resume = resume;
    resume.cut = vec![1, 1, 1].into();
    let _ = log.push(3, late, now, to(&["r"]), packet("late"));
    let d = Offset::new(2, 2);
    let _ = log.push(4, d, now, to(&["r"]), packet("D"));
    let rooms = ["r"];
    let missed = |offset| {
        log.missed_after(offset, rooms.iter().copied(), Some(&resume))
            .map(packets)
    };
    // The client's last was A (the answer's last): it cannot be placed in
    // this log's order, so a fresh session, never a repeat of B.
    assert_eq!(missed(a).err(), Some(LogMiss::Offset));
    // Its last was C (live): D, not the late copy.
    assert_eq!(texts(&missed(c).unwrap()), ["D"]);
    // Without the restore's terms, B would have been given again.
    assert_eq!(
        texts(&packets(
            log.missed_after(a, rooms.iter().copied(), None).unwrap()
        )),
        ["B", "C", "late", "D"]
    );
    // The answer kept with the socket (B then A): its last was B, so A,
    // then what this log gave it (C, D; not the late copy).
    let kept = Resume {
        answer: vec![b, a].into(),
        ..resume.clone()
    };
    let missed = |offset| {
        log.missed_after(offset, rooms.iter().copied(), Some(&kept))
            .map(packets)
    };
    assert_eq!(texts(&missed(b).unwrap()), ["A", "C", "D"]);
    assert_eq!(texts(&missed(a).unwrap()), ["C", "D"]);
    // A packet of the answer this log does not hold (the answering
    // shard's own `socket.emit`): no partial replay.
    let emit_elsewhere = Offset::new(0, 7);
    let kept = Resume {
        answer: vec![b, emit_elsewhere, a].into(),
        ..resume.clone()
    };
    assert_eq!(
        log.missed_after(b, rooms.iter().copied(), Some(&kept))
            .err(),
        Some(LogMiss::Buffer)
    );
}
