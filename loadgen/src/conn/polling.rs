//! The long-polling transport of a client: one connection holds the GET
//! that waits for packets, another carries the POSTs.

use std::net::Ipv4Addr;

use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::task::JoinHandle;

use super::http::HttpConn;
use super::{Outbox, Spec};
use crate::stats::Cause;
use crate::wire::http::polling_request;
use crate::wire::packet::{self, Incoming};

pub struct PollConn {
    post: HttpConn,
    post_target: (String, String, String),
    /// Bodies of the GETs, in order; the poller stops at the first error.
    bodies: LocalReceiver<Result<Vec<u8>, Cause>>,
    poller: JoinHandle<()>,
    /// The handshake's body, read before the poller started.
    first: Option<Vec<u8>>,
}

impl PollConn {
    pub async fn open(spec: &Spec, source: Option<Ipv4Addr>) -> Result<PollConn, Cause> {
        let mut get = HttpConn::new(spec.addr, source);
        let (status, body) = get
            .request(&polling_request(&spec.host, &spec.path, None, None))
            .await?;
        if status != 200 {
            return Err(Cause::HttpStatus);
        }
        let sid = body
            .split(|&b| b == 0x1e)
            .find_map(|p| match packet::classify(p, b"") {
                Incoming::Open(json) => packet::parse_open(json),
                _ => None,
            })
            .ok_or(Cause::BadHandshake)?
            .sid;
        let (tx, bodies) = local_channel::new_bounded(4);
        let (host, path) = (spec.host.clone(), spec.path.clone());
        let poll_sid = sid.clone();
        let poller = glommio::spawn_local(async move {
            let request = polling_request(&host, &path, Some(&poll_sid), None);
            loop {
                let result = match get.request(&request).await {
                    Ok((200, body)) => Ok(body),
                    Ok(_) => Err(Cause::ServerClosed),
                    Err(cause) => Err(cause),
                };
                let failed = result.is_err();
                if tx.send(result).await.is_err() || failed {
                    return;
                }
            }
        })
        .detach();
        Ok(PollConn {
            post: HttpConn::new(spec.addr, source),
            post_target: (spec.host.clone(), spec.path.clone(), sid),
            bodies,
            poller,
            first: Some(body),
        })
    }

    pub async fn recv(
        &mut self,
        out: &mut Outbox,
        on: &mut impl FnMut(&[u8], &mut Outbox),
    ) -> Result<(), Cause> {
        let body = match self.first.take() {
            Some(body) => body,
            None => self
                .bodies
                .recv()
                .await
                .unwrap_or(Err(Cause::ServerClosed))?,
        };
        for packet in body.split(|&b| b == 0x1e) {
            on(packet, out);
        }
        Ok(())
    }

    pub async fn send(&mut self, body: &[u8]) -> Result<(), Cause> {
        let (host, path, sid) = &self.post_target;
        let request = polling_request(host, path, Some(sid), Some(body));
        match self.post.request(&request).await? {
            (200, _) => Ok(()),
            _ => Err(Cause::ServerClosed),
        }
    }
}

impl Drop for PollConn {
    fn drop(&mut self) {
        self.poller.cancel();
    }
}
