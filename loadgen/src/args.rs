//! The command line: one scenario and the options every scenario shares.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    version,
    about = "Drives a Socket.IO server (hub, or any server speaking hub's relay protocol) and reports latency percentiles and throughput",
    after_help = "SCENARIOS:\n  \
      connect  open --clients clients at --rate per second; handshake latency, successes, failures by cause\n  \
      echo     each client emits `echo` with an ack; --rate is the total emits per second (0: closed loop, --inflight per client)\n  \
      fanout   --clients subscribers join --rooms rooms (--rooms-per-client each); --publishers publish to them at --rate in total\n           \
               (0: closed loop on publish acks); end-to-end latency at every receiver, lost and duplicated deliveries\n  \
      idle     hold --clients connections answering pings for --duration; with --server-pid, the server's RSS per connection\n  \
      churn    a soak with loss accounting: --clients subscriber slots connect, join --rooms-per-client of --rooms rooms\n           \
               and a private room, receive for about --lifetime, then leave, and start again, for --duration;\n           \
               --publishers publish to the rooms at --rate with acks. A leaving subscriber first asks every publisher\n           \
               for a fence (a publish to its private room, sent after all the publishes it covers), then leaves\n           \
               cleanly, or abruptly (--abrupt-ratio: no Socket.IO or WebSocket close; --reset-ratio of those with a RST);\n           \
               --polling-ratio of the lives are over long-polling. Every acknowledged publish sent after a subscriber's\n           \
               join was acknowledged and before its publisher's fence must arrive exactly once: reports lost, duplicated,\n           \
               unexpected, connects, disconnects (clean, abrupt, reset, by the server) and with --server-pid the\n           \
               server's RSS every --rss-every. Exits 3 when anything was lost, duplicated or misrouted.\n\n\
      With --server-pid the server's CPU time over the measured window is read from /proc/PID/stat and the\n\
      summary gives deliveries and acks per server CPU-second; with several --server-pid, per CPU-second of\n\
      all of those servers together (their CPU times summed; memory figures are summed too).\n\n\
      SEVERAL SERVERS:\n  \
      --url may be given several times, e.g. once per node of a cluster. Clients are spread over the URLs\n  \
      round robin, each kind on its own: echo, idle and connect client i (and fanout and churn subscriber i)\n  \
      on URL i mod U, publisher p on URL p mod U. With --publishers-on N (fanout, churn) every publisher is\n  \
      on URL N and subscriber i on the (i mod (U-1))th of the other URLs, so every delivery crosses nodes.\n  \
      Latency is measured on loadgen's one clock, from the publish to its receipt, whichever server each\n  \
      side is on. The summary gives, per URL, the clients placed there, their connects and failed connects.\n\n\
      TLS: https:// and wss:// URLs (port 443 unless given) speak TLS 1.2 or 1.3 (rustls), checking the\n  \
      server's certificate against the public roots, or the certificates of --ca PEM (a self-signed\n  \
      server's own), or not at all with --insecure. A failed TLS handshake counts as tls_handshake.\n\n\
      Example: loadgen fanout --url http://127.0.0.1:3000 --clients 1000 --rooms 1 --publishers 10 --rate 1000\n\
      Across two nodes: loadgen fanout --url http://10.0.0.1:3000 --url http://10.0.0.2:3000 --publishers-on 0 \\\n  \
        --server-pid PID1 --server-pid PID2 --clients 1000 --publishers 10 --rate 1000"
)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// A server: http://host:port[/path/] or ws://...; the path defaults to /socket.io/;
    /// https:// and wss:// speak TLS (trust: the public roots, --ca or --insecure).
    /// Give it several times (one per node of a cluster) and the clients are spread over the
    /// URLs round robin (see --publishers-on).
    #[arg(long = "url", value_name = "URL", default_value = "http://127.0.0.1:3000", action = clap::ArgAction::Append)]
    pub urls: Vec<String>,

    /// fanout and churn: every publisher connects to the Nth --url (0-based), and the
    /// subscribers are spread over the other URLs (with a single --url, everyone is on it).
    #[arg(long, value_name = "N")]
    pub publishers_on: Option<usize>,

    /// Engine.IO transport the clients use (churn: see --polling-ratio).
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    pub transport: Transport,

    /// Clients (subscribers in fanout, subscriber slots in churn; publishers come on top).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,

    /// Rooms in fanout and churn; client i joins rooms i*K .. i*K+K-1 (mod rooms), K = --rooms-per-client (churn: i counts lives).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,

    /// Rooms each fanout or churn subscriber joins.
    #[arg(long, default_value_t = 1)]
    pub rooms_per_client: usize,

    /// Publishing clients in fanout and churn; they join no room.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,

    /// Total operations per second: emits (echo), publishes (fanout), connections (connect). 0 means as fast as the server answers.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Unanswered emits (echo) or publishes (fanout) each sender keeps in flight with --rate 0.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,

    /// Measured time, e.g. 10, 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Traffic before the measured window, not counted (churn has none: it counts everything).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// After the window, how long to wait for the last deliveries and acks before counting them lost (churn: for every subscriber to fence and leave, plus 4x --timeout).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Bytes of the string payload each emit or publish carries (timestamps included).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,

    /// Pad payloads with JSON-like records (`{id:..,name:..,score:..},`, compressible about as
    /// real JSON is) rather than `x`, which any compressor squeezes to nothing.
    #[arg(long)]
    pub json_padding: bool,

    /// WebSocket clients offer permessage-deflate (RFC 7692, without context takeover on the
    /// server's side) and inflate what comes compressed; they send uncompressed.
    #[arg(long)]
    pub deflate: bool,

    /// Socket.IO namespace the clients connect to.
    #[arg(long, default_value = "/")]
    pub namespace: String,

    /// https:// and wss:// URLs: trust the certificates of this PEM file (a self-signed
    /// server's certificate, or the CA that signed it) rather than the public roots.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<String>,

    /// https:// and wss:// URLs: accept any server certificate (self-signed ones, say). The
    /// connection is still encrypted, but not authenticated: for tests and benchmarks only.
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,

    /// Token sent in the CONNECT packet's auth ({"token": ...}).
    #[arg(long)]
    pub token: Option<String>,

    /// Local addresses to connect from, round robin: a range 127.0.0.2-127.0.0.9 or a list 127.0.0.2,127.0.0.3.
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,

    /// Load generator threads, one glommio executor each (default: one per CPU).
    #[arg(long)]
    pub shards: Option<usize>,

    /// Handshakes in progress at once, per loadgen shard.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Limit for a connection's handshake and for each ack.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// The server's process id: its CPU time (and for idle and churn, its RSS) is read from /proc.
    /// Give it once per server (e.g. per node of a cluster): the figures are then summed over them.
    #[arg(long = "server-pid", value_name = "PID", action = clap::ArgAction::Append)]
    pub server_pids: Vec<u32>,

    /// churn: mean life of a subscriber connection, from its join's ack to its leave (each is 0.5x to 1.5x this).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lifetime: Duration,

    /// churn: share of the leaves that are abrupt, the TCP connection closed with no Socket.IO or WebSocket close.
    #[arg(long, default_value_t = 0.3)]
    pub abrupt_ratio: f64,

    /// churn: share of the abrupt leaves that reset the connection (SO_LINGER 0: a RST instead of a FIN).
    #[arg(long, default_value_t = 0.5)]
    pub reset_ratio: f64,

    /// churn: share of the subscriber lives over long-polling; the rest, and every publisher, use WebSocket.
    #[arg(long, default_value_t = 0.25)]
    pub polling_ratio: f64,

    /// churn: how often the server's RSS is sampled, with --server-pid.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub rss_every: Duration,

    /// Testing the accounting: churn subscribers ignore every Nth message they receive.
    #[arg(long, hide = true)]
    pub drop_every: Option<u64>,

    /// Print the summary as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Write the latency intervals as an HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    pub hist: Option<PathBuf>,

    /// Write a latency-by-percentile chart as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Leave out the live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// Print a line on stderr at the run's edges, for a profiler to start and
    /// stop with: `loadgen: warmup start` once every client is set up,
    /// `loadgen: window start` and `loadgen: window end` where the summary's
    /// measured window begins and ends (its counts are exactly that window's).
    /// After each line, wait for a line on stdin (or its end: `</dev/null`
    /// does not wait) before going on. Printed with --quiet too; not in the
    /// churn and connect scenarios.
    #[arg(long)]
    pub mark_window: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Open connections at a rate; handshake latency.
    Connect,
    /// Emit with ack; ack round trip.
    Echo,
    /// Publish to rooms; end-to-end delivery latency.
    Fanout,
    /// Hold connections; server memory per connection.
    Idle,
    /// Subscribers come and go while publishers publish; every delivery accounted for.
    Churn,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Websocket,
    Polling,
}

#[derive(Clone, Debug)]
pub struct SourceIps(pub Vec<Ipv4Addr>);

impl Args {
    /// Where TLS targets' certificates are trusted from.
    pub fn trust(&self) -> crate::conn::Trust<'_> {
        match (&self.ca, self.insecure) {
            (Some(path), _) => crate::conn::Trust::CaFile(path),
            (None, true) => crate::conn::Trust::Insecure,
            (None, false) => crate::conn::Trust::PublicRoots,
        }
    }

    /// Checks what clap cannot: the combinations.
    pub fn validate(&self) -> Result<(), String> {
        if self.clients == 0 && self.scenario != Scenario::Fanout {
            return Err("--clients must be at least 1".into());
        }
        if matches!(self.scenario, Scenario::Fanout | Scenario::Churn) {
            if self.rooms == 0 {
                return Err("--rooms must be at least 1".into());
            }
            if self.rooms_per_client == 0 || self.rooms_per_client > self.rooms {
                return Err(format!(
                    "--rooms-per-client must be between 1 and --rooms ({})",
                    self.rooms
                ));
            }
            if self.publishers == 0 {
                return Err("--publishers must be at least 1".into());
            }
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("--rate must be a number of operations per second, 0 or more".into());
        }
        for (name, ratio) in [
            ("--abrupt-ratio", self.abrupt_ratio),
            ("--reset-ratio", self.reset_ratio),
            ("--polling-ratio", self.polling_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if self.lifetime.is_zero() {
            return Err("--lifetime must be more than 0".into());
        }
        if self.rss_every.is_zero() {
            return Err("--rss-every must be more than 0".into());
        }
        if self.drop_every == Some(0) {
            return Err("--drop-every must be at least 1".into());
        }
        if self.inflight == 0 {
            return Err("--inflight must be at least 1".into());
        }
        if self.payload_bytes < 48
            && matches!(
                self.scenario,
                Scenario::Fanout | Scenario::Echo | Scenario::Churn
            )
        {
            return Err("--payload-bytes must be at least 48: it carries the sender, sequence number and timestamp".into());
        }
        if self.payload_bytes > 1 << 20 {
            return Err("--payload-bytes must be at most 1 MiB".into());
        }
        if !self.namespace.starts_with('/') {
            return Err("--namespace must start with /".into());
        }
        if self.duration.is_zero() && self.scenario != Scenario::Connect {
            return Err("--duration must be more than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        if self.shards == Some(0) {
            return Err("--shards must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if let Some(n) = self.publishers_on {
            if !matches!(self.scenario, Scenario::Fanout | Scenario::Churn) {
                return Err(
                    "--publishers-on is for fanout and churn, which have publishers".into(),
                );
            }
            if n >= self.urls.len() {
                return Err(format!(
                    "--publishers-on {n}: there are {} --url, counted from 0",
                    self.urls.len()
                ));
            }
        }
        for (i, pid) in self.server_pids.iter().enumerate() {
            if self.server_pids[..i].contains(pid) {
                return Err(format!(
                    "--server-pid {pid} is given twice: its CPU would be counted twice"
                ));
            }
        }
        Ok(())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Clients that open a connection: subscribers plus publishers.
    pub fn total_clients(&self) -> usize {
        match self.scenario {
            Scenario::Fanout | Scenario::Churn => self.clients + self.publishers,
            _ => self.clients,
        }
    }
}

/// `10`, `10s`, `250ms`, `2m`: plain numbers are seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 10s, 500ms or 2m)"))?;
    if !(value >= 0.0 && value.is_finite()) {
        return Err(format!("`{text}` is not a duration (try 10s, 500ms or 2m)"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// `127.0.0.2-127.0.0.9` or `127.0.0.2,127.0.0.5`.
pub fn parse_source_ips(text: &str) -> Result<SourceIps, String> {
    let parse = |s: &str| -> Result<Ipv4Addr, String> {
        s.trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("`{}` is not an IPv4 address", s.trim()))
    };
    let ips = if let Some((first, last)) = text.split_once('-') {
        let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
        if last < first || last - first >= 1024 {
            return Err(format!(
                "`{text}` is not a range of at most 1024 addresses, low to high"
            ));
        }
        (first..=last).map(Ipv4Addr::from).collect()
    } else {
        text.split(',').map(parse).collect::<Result<Vec<_>, _>>()?
    };
    Ok(SourceIps(ips))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn source_ips() {
        let range = parse_source_ips("127.0.0.2-127.0.0.9").unwrap();
        assert_eq!(range.0.len(), 8);
        assert_eq!(range.0[7], Ipv4Addr::new(127, 0, 0, 9));
        let list = parse_source_ips("127.0.0.2, 127.0.0.5").unwrap();
        assert_eq!(
            list.0,
            vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 5)]
        );
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("localhost").is_err());
    }

    #[test]
    fn combinations_are_checked() {
        let args = Args::try_parse_from([
            "loadgen",
            "fanout",
            "--rooms",
            "2",
            "--rooms-per-client",
            "3",
        ])
        .unwrap();
        assert!(args.validate().unwrap_err().contains("--rooms-per-client"));
        let args = Args::try_parse_from(["loadgen", "echo", "--payload-bytes", "10"]).unwrap();
        assert!(args.validate().unwrap_err().contains("--payload-bytes"));
        let args = Args::try_parse_from(["loadgen", "echo", "--namespace", "chat"]).unwrap();
        assert!(args.validate().is_err());
        let args = Args::try_parse_from(["loadgen", "fanout"]).unwrap();
        assert!(args.validate().is_ok());
        let args = Args::try_parse_from(["loadgen", "churn", "--abrupt-ratio", "1.5"]).unwrap();
        assert!(args.validate().unwrap_err().contains("--abrupt-ratio"));
        let args = Args::try_parse_from(["loadgen", "churn", "--lifetime", "0"]).unwrap();
        assert!(args.validate().unwrap_err().contains("--lifetime"));
        let args = Args::try_parse_from(["loadgen", "churn", "--publishers", "0"]).unwrap();
        assert!(args.validate().unwrap_err().contains("--publishers"));
        let args = Args::try_parse_from(["loadgen", "churn", "--clients", "0"]).unwrap();
        assert!(args.validate().unwrap_err().contains("--clients"));
        let args = Args::try_parse_from(["loadgen", "churn"]).unwrap();
        assert!(args.validate().is_ok());
        assert_eq!(args.total_clients(), 101);
    }

    #[test]
    fn one_url_by_default_and_several_when_given() {
        let args = Args::try_parse_from(["loadgen", "echo"]).unwrap();
        assert_eq!(args.urls, ["http://127.0.0.1:3000"]);
        assert!(args.server_pids.is_empty());
        let args = Args::try_parse_from(["loadgen", "echo", "--url", "http://a:1"]).unwrap();
        assert_eq!(
            args.urls,
            ["http://a:1"],
            "a given --url replaces the default"
        );
        let args = Args::try_parse_from([
            "loadgen",
            "fanout",
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
            "--publishers-on",
            "1",
            "--server-pid",
            "10",
            "--server-pid",
            "11",
        ])
        .unwrap();
        assert_eq!(args.urls, ["http://a:1", "http://b:2"]);
        assert_eq!(args.publishers_on, Some(1));
        assert_eq!(args.server_pids, [10, 11]);
        assert!(args.validate().is_ok());
    }

    #[test]
    fn placement_and_pids_are_checked() {
        let two = ["--url", "http://a:1", "--url", "http://b:2"];
        let parse = |scenario: &str, extra: &[&str]| {
            let mut argv = vec!["loadgen", scenario];
            argv.extend_from_slice(&two);
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap()
        };
        let err = parse("fanout", &["--publishers-on", "2"])
            .validate()
            .unwrap_err();
        assert!(
            err.contains("--publishers-on 2") && err.contains("2 --url"),
            "{err}"
        );
        let err = parse("echo", &["--publishers-on", "0"])
            .validate()
            .unwrap_err();
        assert!(err.contains("--publishers-on"), "{err}");
        assert!(parse("churn", &["--publishers-on", "1"]).validate().is_ok());
        let err = parse("fanout", &["--server-pid", "7", "--server-pid", "7"])
            .validate()
            .unwrap_err();
        assert!(err.contains("--server-pid 7"), "{err}");
        // One URL: publishers on it is allowed (subscribers then share it).
        let args = Args::try_parse_from(["loadgen", "fanout", "--publishers-on", "0"]).unwrap();
        assert!(args.validate().is_ok());
    }
}
