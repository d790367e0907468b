//! Which `--url` each client connects to: round robin over the URLs, each
//! kind of client on its own (subscribers by their index, publishers by
//! their number), or with `--publishers-on N` every publisher on URL N and
//! the subscribers on the others, so that every delivery crosses nodes.

use crate::args::Args;
use crate::scenario::{role, Role};

/// The rule that places clients on URLs, for one run.
#[derive(Clone, Copy, Debug)]
pub struct ClientPlacement {
    /// How many `--url`s there are (at least 1).
    urls: usize,
    /// `--publishers-on`: the URL every publisher connects to.
    publishers_on: Option<usize>,
}

/// The clients one URL gets, planned before any connects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planned {
    /// Every client placed on the URL, publishers included.
    pub clients: usize,
    /// Of those, publishers (fanout and churn).
    pub publishers: usize,
}

impl ClientPlacement {
    /// `publishers_on`, when given, must be below `urls` (`Args::validate`).
    pub fn new(urls: usize, publishers_on: Option<usize>) -> ClientPlacement {
        assert!(urls > 0, "at least one URL");
        if let Some(n) = publishers_on {
            assert!(n < urls, "--publishers-on {n}: a URL that exists");
        }
        ClientPlacement {
            urls,
            publishers_on,
        }
    }

    pub fn of(args: &Args) -> ClientPlacement {
        ClientPlacement::new(args.urls.len(), args.publishers_on)
    }

    /// The URL (an index into `--url`) of client `index`, whose role is
    /// `role`: for subscribers, echo and idle clients `index` counts them
    /// from 0; publishers go by their own number.
    pub fn url_of(&self, role: Role, index: usize) -> usize {
        let publisher = match role {
            Role::Publisher(p) | Role::ChurnPublisher(p) => Some(p as usize),
            Role::Hold | Role::Echo | Role::Subscriber | Role::Churner => None,
        };
        match (publisher, self.publishers_on) {
            (Some(_), Some(on)) => on,
            (Some(p), None) => p % self.urls,
            (None, Some(on)) if self.urls > 1 => {
                // The (index mod U-1)th URL that is not the publishers'.
                let k = index % (self.urls - 1);
                if k >= on {
                    k + 1
                } else {
                    k
                }
            }
            (None, _) => index % self.urls,
        }
    }

    /// The URL of client `index` of the whole run (subscribers first, then
    /// publishers, as `scenario::role` numbers them).
    pub fn url_of_client(&self, args: &Args, index: usize) -> usize {
        self.url_of(role(args.scenario, args.clients, index), index)
    }

    /// What every URL gets, in `--url` order.
    pub fn plan(&self, args: &Args) -> Vec<Planned> {
        let mut plan = vec![Planned::default(); self.urls];
        for index in 0..args.total_clients() {
            let url = self.url_of_client(args, index);
            plan[url].clients += 1;
            if matches!(
                role(args.scenario, args.clients, index),
                Role::Publisher(_) | Role::ChurnPublisher(_)
            ) {
                plan[url].publishers += 1;
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(argv: &[&str]) -> Args {
        let args = Args::try_parse_from(std::iter::once("loadgen").chain(argv.iter().copied()))
            .expect("valid arguments");
        args.validate().expect("a valid combination");
        args
    }

    fn urls_of(args: &Args) -> Vec<usize> {
        let placement = ClientPlacement::of(args);
        (0..args.total_clients())
            .map(|i| placement.url_of_client(args, i))
            .collect()
    }

    #[test]
    fn one_url_takes_every_client() {
        for scenario in ["connect", "echo", "fanout", "idle", "churn"] {
            let a = args(&[scenario, "--clients", "7", "--publishers", "3"]);
            assert!(urls_of(&a).iter().all(|&u| u == 0), "{scenario}");
            let plan = ClientPlacement::of(&a).plan(&a);
            assert_eq!(plan.len(), 1);
            assert_eq!(plan[0].clients, a.total_clients());
        }
        let a = args(&["fanout", "--publishers-on", "0", "--clients", "4"]);
        assert!(urls_of(&a).iter().all(|&u| u == 0));
    }

    #[test]
    fn echo_idle_and_connect_go_round_robin() {
        for scenario in ["echo", "idle", "connect"] {
            let a = args(&[
                scenario,
                "--clients",
                "7",
                "--url",
                "http://a:1",
                "--url",
                "http://b:2",
                "--url",
                "http://c:3",
            ]);
            assert_eq!(urls_of(&a), [0, 1, 2, 0, 1, 2, 0], "{scenario}");
            let plan = ClientPlacement::of(&a).plan(&a);
            let clients: Vec<usize> = plan.iter().map(|p| p.clients).collect();
            assert_eq!(clients, [3, 2, 2]);
            assert!(plan.iter().all(|p| p.publishers == 0));
        }
    }

    #[test]
    fn fanout_spreads_subscribers_and_publishers_each_on_their_own() {
        // 5 subscribers, then 3 publishers; each kind starts at URL 0.
        let a = args(&[
            "fanout",
            "--clients",
            "5",
            "--publishers",
            "3",
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
        ]);
        assert_eq!(urls_of(&a), [0, 1, 0, 1, 0, 0, 1, 0]);
        let plan = ClientPlacement::of(&a).plan(&a);
        assert_eq!(
            plan,
            [
                Planned {
                    clients: 5,
                    publishers: 2
                },
                Planned {
                    clients: 3,
                    publishers: 1
                }
            ]
        );
    }

    #[test]
    fn publishers_on_one_url_and_subscribers_on_the_others() {
        let two = ["--url", "http://a:1", "--url", "http://b:2"];
        for (on, subscribers_on) in [("0", 1), ("1", 0)] {
            let mut argv = vec!["fanout", "--clients", "4", "--publishers", "2"];
            argv.extend_from_slice(&two);
            argv.extend_from_slice(&["--publishers-on", on]);
            let a = args(&argv);
            let publishers_on: usize = on.parse().unwrap();
            let urls = urls_of(&a);
            assert!(urls[..4].iter().all(|&u| u == subscribers_on), "{urls:?}");
            assert!(urls[4..].iter().all(|&u| u == publishers_on), "{urls:?}");
        }
        // Three URLs, publishers on the middle one: subscribers alternate
        // over the first and the last.
        let a = args(&[
            "churn",
            "--clients",
            "5",
            "--publishers",
            "2",
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
            "--url",
            "http://c:3",
            "--publishers-on",
            "1",
        ]);
        assert_eq!(urls_of(&a), [0, 2, 0, 2, 0, 1, 1]);
        let plan = ClientPlacement::of(&a).plan(&a);
        let clients: Vec<(usize, usize)> = plan.iter().map(|p| (p.clients, p.publishers)).collect();
        assert_eq!(clients, [(3, 0), (2, 2), (2, 0)]);
    }

    #[test]
    fn every_client_is_placed_on_a_url_that_exists() {
        for urls in 1..5 {
            for on in std::iter::once(None).chain((0..urls).map(Some)) {
                let placement = ClientPlacement::new(urls, on);
                for index in 0..50 {
                    for role in [Role::Hold, Role::Echo, Role::Subscriber, Role::Churner] {
                        let url = placement.url_of(role, index);
                        assert!(url < urls);
                        if let Some(on) = on.filter(|_| urls > 1) {
                            assert_ne!(url, on, "a subscriber on the publishers' URL");
                        }
                    }
                    let url = placement.url_of(Role::Publisher(index as u32), index);
                    assert_eq!(url, on.unwrap_or(index % urls));
                }
            }
        }
    }
}
