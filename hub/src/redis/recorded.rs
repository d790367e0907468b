//! The messages recorded from Node's adapter and emitter (`fixtures/`,
//! written by `tests/clients/node/record-redis-fixtures.mjs`), for tests.

use std::path::Path;

use serde_json::Value;

/// One recorded message.
pub(crate) struct Fixture {
    pub case: String,
    pub channel: String,
    pub bytes: Vec<u8>,
    /// Its payload as the recorder decoded it.
    pub decoded: Value,
}

impl Fixture {
    /// Sharded (`createShardedAdapter`), not classic or the emitter.
    pub fn sharded(&self) -> bool {
        self.case.starts_with("sharded")
    }
}

pub(crate) fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/redis/fixtures");
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    index
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| Fixture {
            case: m["case"].as_str().unwrap().to_string(),
            channel: m["channel"].as_str().unwrap().to_string(),
            bytes: std::fs::read(dir.join(m["file"].as_str().unwrap())).expect("fixture"),
            decoded: m["decoded"].clone(),
        })
        .collect()
}
