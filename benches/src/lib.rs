//! Criterion benchmarks of hub's hot paths live in `benches/`; run them with
//! `cargo bench -p hub-benches`.
