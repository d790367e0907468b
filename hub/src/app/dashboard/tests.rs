use std::time::{Duration, Instant};

use super::*;

/// Two shards' handles with known counts; shard 1 did not answer the stats
/// round, so its connections come from its gauge.
#[test]
fn a_sample_sums_the_shards_and_falls_back_to_the_gauge() {
    let metrics = Metrics::new();
    let handles = vec![metrics.for_shard(0), metrics.for_shard(1)];
    handles[0].deliveries.inc_by(100);
    handles[1].deliveries.inc_by(50);
    handles[0].cross_shard_queue.set(3);
    handles[1].cross_shard_backlog_bytes.set(4096);
    handles[1].slow_consumer_disconnects.inc_by(2);
    handles[1].connections.set(7);
    let stats = vec![ShardStats {
        shard: 0,
        connections: 5,
        polling: 2,
        websocket: 3,
        ..ShardStats::default()
    }];
    let start = Instant::now();
    let mut meter = RateMeter::new();
    let counters: Vec<u64> = handles.iter().flat_map(ShardCounters::read).collect();
    let _ = meter.rates(start, &counters);
    handles[0].deliveries.inc_by(30);
    handles[1].deliveries.inc_by(10);
    handles[1].bytes_in.inc_by(1_000);
    let counters: Vec<u64> = handles.iter().flat_map(ShardCounters::read).collect();
    let rates = meter.rates(start + Duration::from_millis(500), &counters);
    let sample = sample_json(
        &handles,
        &stats,
        &counters,
        &rates,
        None,
        1,
        Duration::from_millis(500),
    );
    assert_eq!(sample["connections"], 12);
    assert_eq!(
        (&sample["polling"], &sample["websocket"]),
        (&2.into(), &3.into())
    );
    assert_eq!(sample["deliveries_per_s"], 80.0);
    assert_eq!(sample["deliveries_total"], 190);
    assert_eq!(sample["bytes_in_per_s"], 2_000.0);
    assert_eq!(sample["cross_shard_queue"], 3);
    assert_eq!(sample["cross_shard_backlog_bytes"], 4096);
    assert_eq!(sample["slow_consumer_disconnects"], 2);
    assert_eq!(sample["dashboard_streams"], 1);
    assert_eq!(sample["interval_ms"], 500);
    assert!(sample["cluster"].is_null());
    let shards = sample["shards"].as_array().unwrap();
    assert_eq!(shards[0]["deliveries_per_s"], 60.0);
    assert_eq!(shards[0]["websocket"], 3);
    assert_eq!(shards[1]["deliveries_per_s"], 20.0);
    assert_eq!(shards[1]["connections"], 7);
    assert!(shards[1]["polling"].is_null() && shards[1]["websocket"].is_null());
}

#[test]
fn the_stall_timeout_is_ten_intervals_and_at_least_two_seconds() {
    let config = |ms| DashboardConfig {
        max_streams: 1,
        interval: Duration::from_millis(ms),
    };
    assert_eq!(config(1_000).stall_timeout(), Duration::from_secs(10));
    assert_eq!(config(10).stall_timeout(), Duration::from_secs(2));
}
