use super::*;

/// Two publishers, two shared rooms: publisher p's publish `seq` goes to
/// room (2 * seq + p) % 2 = p, so publisher 0 feeds room 0 only and
/// publisher 1 room 1 only.
const PUBLISHERS: usize = 2;
const ROOMS: usize = 2;

fn settled(publisher: u32, upto: u64, failed: &[u64]) -> Settled {
    Settled {
        publisher,
        upto,
        fence_acked: Some(true),
        failed: failed.to_vec(),
    }
}

/// A life in room 0 only that counts publisher 0 from 10 and publisher 1
/// from 4.
fn life_in_room_0() -> Ledger {
    Ledger::new(&[0], ROOMS, &[10, 4])
}

/// Receives publisher 0's `seqs`, then both fences (0 up to `upto0`, 1 up
/// to 9) and both settlements.
fn fenced(ledger: &mut Ledger, seqs: &[u64], upto0: u64, failed0: &[u64]) {
    for &seq in seqs {
        ledger.on_publish(0, seq).unwrap();
    }
    ledger.on_fence(0, upto0);
    ledger.on_fence(1, 9);
    assert!(ledger.awaits(0) && ledger.awaits(1), "no answers yet");
    ledger.on_settled(settled(0, upto0, failed0));
    ledger.on_settled(settled(1, 9, &[]));
    assert!(!ledger.awaits(0) && !ledger.awaits(1));
}

#[test]
fn rooms_are_shared_round_robin() {
    assert_eq!(room_of(0, 0, PUBLISHERS, ROOMS), 0);
    assert_eq!(room_of(1, 7, PUBLISHERS, ROOMS), 1);
    let mut per_room = [0; 3];
    for seq in 0..30 {
        for p in 0..2 {
            per_room[room_of(p, seq, 2, 3)] += 1;
        }
    }
    assert_eq!(per_room, [20, 20, 20]);
}

#[test]
fn every_message_once_is_nothing_lost() {
    let mut ledger = life_in_room_0();
    fenced(&mut ledger, &[10, 11, 12, 13, 14], 15, &[]);
    let t = ledger.tally(End::Left);
    // 5 publishes of publisher 0 and the two fences.
    assert_eq!(
        t,
        Tally {
            expected: 7,
            delivered: 7,
            ..Tally::default()
        }
    );
}

#[test]
fn a_missed_message_is_lost() {
    let mut ledger = life_in_room_0();
    fenced(&mut ledger, &[10, 11, 13, 14], 15, &[]);
    let t = ledger.tally(End::Left);
    assert_eq!(t.lost, 1);
    assert_eq!((t.expected, t.delivered), (7, 6));
    assert_eq!(t.duplicated, 0);
}

#[test]
fn a_second_copy_is_duplicated() {
    let mut ledger = life_in_room_0();
    fenced(&mut ledger, &[10, 11, 11, 12, 11, 13, 14], 15, &[]);
    ledger.on_fence(1, 9);
    let t = ledger.tally(End::Left);
    assert_eq!(t.duplicated, 3, "two more copies of 11, one more fence");
    assert_eq!((t.lost, t.delivered), (0, 7));
}

#[test]
fn messages_before_the_join_or_after_the_fence_are_not_expected() {
    let mut ledger = life_in_room_0();
    // 8 and 9 were numbered before the join's ack; 15 and 16 after the fence.
    fenced(&mut ledger, &[8, 9, 10, 11, 12, 13, 14, 15, 16], 15, &[]);
    let t = ledger.tally(End::Left);
    assert_eq!((t.expected, t.delivered, t.lost), (7, 7, 0));
    assert_eq!(t.unexpected, 4);
    assert_eq!(t.misrouted, 0);
}

#[test]
fn a_message_after_the_fence_missing_is_not_lost() {
    let mut ledger = life_in_room_0();
    fenced(&mut ledger, &[10, 11, 12, 13, 14, 16], 15, &[]);
    let t = ledger.tally(End::Left);
    assert_eq!(t.lost, 0, "15 was sent after the fence: not expected");
    assert_eq!(t.unexpected, 1);
}

#[test]
fn publishes_that_were_not_acknowledged_are_not_expected() {
    let mut ledger = life_in_room_0();
    // 12 timed out and never came; 13 was refused but came anyway.
    fenced(&mut ledger, &[10, 11, 13, 14], 15, &[12, 13]);
    let t = ledger.tally(End::Left);
    assert_eq!((t.expected, t.delivered, t.lost), (5, 5, 0));
    assert_eq!(t.unexpected, 1);
}

#[test]
fn only_the_rooms_joined_are_expected_and_others_are_misrouted() {
    let mut ledger = life_in_room_0();
    fenced(&mut ledger, &[10, 11, 12, 13, 14], 15, &[]);
    // Publisher 1 publishes to room 1 only, which this life never joined.
    ledger.on_publish(1, 5).unwrap();
    let t = ledger.tally(End::Left);
    assert_eq!((t.expected, t.lost), (7, 0));
    assert_eq!((t.unexpected, t.misrouted), (1, 1));
}

#[test]
fn a_fence_that_never_came_is_lost_and_its_window_still_counts() {
    let mut ledger = life_in_room_0();
    for seq in [10, 11] {
        ledger.on_publish(0, seq);
    }
    ledger.on_fence(1, 9);
    ledger.on_settled(settled(0, 15, &[]));
    ledger.on_settled(settled(1, 9, &[]));
    assert!(ledger.awaits(0), "an acknowledged fence is awaited");
    assert!(!ledger.awaits(1));
    let t = ledger.tally(End::Left);
    assert_eq!(t.fences_lost, 1);
    // 12, 13, 14 and the fence of publisher 0.
    assert_eq!(t.lost, 4);
    assert_eq!((t.expected, t.delivered), (7, 3));
}

#[test]
fn a_fence_that_was_not_acknowledged_is_not_expected() {
    let mut ledger = life_in_room_0();
    ledger.on_fence(1, 9);
    ledger.on_settled(Settled {
        publisher: 0,
        upto: 10,
        fence_acked: Some(false),
        failed: vec![],
    });
    ledger.on_settled(settled(1, 9, &[]));
    assert!(!ledger.awaits(0), "a fence not acknowledged is not awaited");
    let t = ledger.tally(End::Left);
    assert_eq!((t.lost, t.fences_lost), (0, 0));
    assert_eq!((t.expected, t.delivered), (1, 1));
}

#[test]
fn a_publisher_that_never_answers_is_unsettled() {
    let mut ledger = life_in_room_0();
    for seq in [10, 12] {
        ledger.on_publish(0, seq);
    }
    ledger.on_fence(0, 14);
    ledger.on_fence(1, 9);
    ledger.on_settled(settled(1, 9, &[]));
    let t = ledger.tally(End::Left);
    assert_eq!(t.unsettled, 1);
    // Up to the fence: 11 and 13 lost; the fence came but, unanswered, it
    // is not known to be acknowledged.
    assert_eq!(t.lost, 2);
    assert_eq!(t.unexpected, 1);
}

#[test]
fn a_life_the_server_closed_loses_only_the_gaps() {
    let mut ledger = life_in_room_0();
    for seq in [10, 11, 13, 14] {
        ledger.on_publish(0, seq);
    }
    assert_eq!(ledger.received_upto(0), 15);
    assert_eq!(ledger.received_upto(1), 4, "nothing from publisher 1");
    ledger.on_settled(Settled {
        publisher: 0,
        upto: 15,
        fence_acked: None,
        failed: vec![],
    });
    ledger.on_settled(Settled {
        publisher: 1,
        upto: 4,
        fence_acked: None,
        failed: vec![],
    });
    let t = ledger.tally(End::ServerClosed);
    // 12 is a gap; what came after 14 could not be expected.
    assert_eq!((t.expected, t.delivered, t.lost), (5, 4, 1));
    assert_eq!(t.fences_lost, 0);
}

#[test]
fn a_life_closed_while_fencing_counts_up_to_its_fence() {
    let mut ledger = life_in_room_0();
    for seq in [10, 11, 12] {
        ledger.on_publish(0, seq);
    }
    ledger.on_fence(0, 13);
    ledger.on_settled(settled(0, 13, &[]));
    // Publisher 1's fence was asked for and acknowledged, but the server
    // closed the connection first: not lost.
    ledger.on_settled(settled(1, 9, &[]));
    let t = ledger.tally(End::ServerClosed);
    assert_eq!((t.expected, t.delivered, t.lost), (4, 4, 0));
}

#[test]
fn far_sequence_numbers_are_counted_too() {
    let mut ledger = Ledger::new(&[0, 1], ROOMS, &[1 << 30, 0]);
    assert_eq!(ledger.on_publish(0, 5), Some(Copy::First));
    assert_eq!(ledger.on_publish(0, 5), Some(Copy::Again));
    assert_eq!(ledger.on_publish(1, MAX_DENSE + 7), Some(Copy::First));
    assert_eq!(ledger.on_publish(9, 1), None, "no such publisher");
    let t = ledger.tally(End::Left);
    assert_eq!(t.duplicated, 1);
    assert_eq!(t.unexpected, 1, "5 came before the join");
}

// The publisher's book.

use book::{Answered, Book, Expired};

#[test]
fn a_fence_settles_after_its_ack_and_every_publish_before_it() {
    let mut book: Book<&str> = Book::new(3);
    let (a, seq_a) = book.publish(0);
    let (b, seq_b) = book.publish(0);
    assert_eq!((seq_a, seq_b), (0, 1));
    let (fence, upto) = book.fence(0, 0, "s1");
    assert_eq!(upto, 2, "the fence covers both publishes");
    let (_, seq_c) = book.publish(0);
    assert_eq!(seq_c, 2);
    assert_eq!(book.publishes_in_flight(), 3);
    assert_eq!(book.on_ack(fence, true), Some(Answered::Fence { ok: true }));
    assert!(
        book.poll_settled().is_none(),
        "publishes 0 and 1 unanswered"
    );
    assert_eq!(
        book.on_ack(b, true),
        Some(Answered::Publish { seq: 1, ok: true })
    );
    assert!(book.poll_settled().is_none(), "publish 0 unanswered");
    assert_eq!(
        book.on_ack(a, false),
        Some(Answered::Publish { seq: 0, ok: false })
    );
    let (ticket, settled) = book.poll_settled().expect("settled");
    assert_eq!(ticket, "s1");
    assert_eq!(
        settled,
        Settled {
            publisher: 3,
            upto: 2,
            fence_acked: Some(true),
            failed: vec![0],
        }
    );
    assert!(book.poll_settled().is_none(), "answered once");
    assert_eq!(book.on_ack(a, true), None, "an id answered already");
}

#[test]
fn timeouts_fail_publishes_and_fences() {
    let mut book: Book<u8> = Book::new(0);
    let _ = book.publish(100);
    let (_, upto) = book.fence(150, 0, 7);
    let (late, _) = book.publish(400);
    assert_eq!(book.oldest_sent(), Some(100));
    assert_eq!(book.expire(299, 200), Expired::default());
    assert_eq!(
        book.expire(350, 200),
        Expired {
            publishes: 1,
            fences: 1
        }
    );
    assert_eq!(book.oldest_sent(), Some(400));
    let (_, settled) = book
        .poll_settled()
        .expect("nothing below the fence is pending");
    assert_eq!(upto, 1);
    assert_eq!(settled.fence_acked, Some(false));
    assert_eq!(settled.failed, vec![0]);
    assert!(book.on_ack(late, true).is_some());
}

#[test]
fn failures_are_reported_only_inside_the_window() {
    let mut book: Book<()> = Book::new(0);
    let ids: Vec<u64> = (0..10).map(|_| book.publish(0).0).collect();
    for (seq, &id) in ids.iter().enumerate() {
        book.on_ack(id, seq % 3 != 0); // 0, 3, 6 and 9 refused
    }
    let (fence, _) = book.fence(0, 4, ());
    book.on_ack(fence, true);
    let (_, settled) = book.poll_settled().unwrap();
    assert_eq!((settled.upto, settled.failed), (10, vec![6, 9]));
}

#[test]
fn a_closed_subscriber_only_asks() {
    let mut book: Book<()> = Book::new(1);
    let (first, _) = book.publish(0);
    let (second, _) = book.publish(0);
    book.on_ack(second, false);
    book.ask(0, 99, ());
    assert!(book.poll_settled().is_none(), "publish 0 unanswered");
    book.on_ack(first, true);
    let (_, settled) = book.poll_settled().unwrap();
    assert_eq!(
        settled,
        Settled {
            publisher: 1,
            upto: 2,
            fence_acked: None,
            failed: vec![1]
        }
    );
}
