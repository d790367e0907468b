use std::time::{Duration, Instant};

use super::*;

#[test]
fn rates_are_per_second_over_the_time_between_reads() {
    let start = Instant::now();
    let mut meter = RateMeter::new();
    assert_eq!(meter.rates(start, &[100, 5]), vec![0.0, 0.0], "first read");
    assert_eq!(
        meter.rates(start + Duration::from_secs(1), &[1_100, 5]),
        vec![1_000.0, 0.0]
    );
    // Half a second: the delta is doubled.
    assert_eq!(
        meter.rates(start + Duration::from_millis(1_500), &[1_600, 8]),
        vec![1_000.0, 6.0]
    );
    // A late tick (3 s) averages over the whole gap.
    assert_eq!(
        meter.rates(start + Duration::from_millis(4_500), &[1_610, 8]),
        vec![3.3, 0.0]
    );
}

#[test]
fn rates_of_new_restarted_and_timeless_counters() {
    let start = Instant::now();
    let mut meter = RateMeter::new();
    let _ = meter.rates(start, &[10]);
    // A second counter appears (a shard's first read): zero, not its total.
    assert_eq!(
        meter.rates(start + Duration::from_secs(2), &[30, 500]),
        vec![10.0, 0.0]
    );
    // A counter that went down counts from zero.
    assert_eq!(
        meter.rates(start + Duration::from_secs(3), &[4, 600]),
        vec![4.0, 100.0]
    );
    // No time passed: no rate rather than a division by zero.
    assert_eq!(
        meter.rates(start + Duration::from_secs(3), &[50, 700]),
        vec![0.0, 0.0]
    );
}

#[test]
fn history_keeps_the_newest_and_numbers_them() {
    let mut history = History::new(3);
    assert!(history.is_empty());
    assert_eq!(history.next_seq(), 0);
    assert_eq!(history.catch_up(0), None);
    for n in 0..5u64 {
        assert_eq!(history.push(n * 10), n);
    }
    assert_eq!(history.len(), 3);
    assert_eq!(
        history.iter().copied().collect::<Vec<_>>(),
        vec![20, 30, 40]
    );
    assert_eq!(history.next_seq(), 5);
}

#[test]
fn a_reader_gets_the_newest_sample_and_what_it_skipped() {
    let mut history = History::new(300);
    let cursor = history.next_seq();
    history.push("a");
    assert_eq!(
        history.catch_up(cursor),
        Some(CatchUp {
            sample: &"a",
            seq: 0,
            skipped: 0
        })
    );
    // Up to date: nothing until the next push.
    assert_eq!(history.catch_up(1), None);
    history.push("b");
    history.push("c");
    history.push("d");
    // A reader that stalled for three samples gets only the newest.
    assert_eq!(
        history.catch_up(1),
        Some(CatchUp {
            sample: &"d",
            seq: 3,
            skipped: 2
        })
    );
}

#[test]
fn a_reader_behind_the_kept_samples_still_catches_up() {
    let mut history = History::new(2);
    for n in 0..10 {
        history.push(n);
    }
    assert_eq!(
        history.catch_up(1),
        Some(CatchUp {
            sample: &9,
            seq: 9,
            skipped: 8
        })
    );
    // A zero capacity still keeps the newest.
    let mut tiny = History::new(0);
    tiny.push(1);
    tiny.push(2);
    assert_eq!(tiny.iter().copied().collect::<Vec<_>>(), vec![2]);
}
