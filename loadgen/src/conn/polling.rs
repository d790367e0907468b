//! The long-polling transport of a client: one connection holds the GET
//! that waits for packets, another carries the POSTs.

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

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
    /// Dropped with the PollConn, it stops the GET task.
    _stop: LocalSender<()>,
    /// Both connections close with a RST when set.
    reset: Rc<Cell<bool>>,
    /// The handshake's body, read before the poller started.
    first: Option<Vec<u8>>,
}

impl PollConn {
    pub async fn open(spec: &Spec, source: Option<Ipv4Addr>) -> Result<PollConn, Cause> {
        let mut get = HttpConn::new(spec.addr, source, spec.tls.clone());
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
        let (stop, stopped) = local_channel::new_bounded::<()>(1);
        let reset = Rc::new(Cell::new(false));
        let mut get = get.reset_on_drop(reset.clone());
        let (host, path) = (spec.host.clone(), spec.path.clone());
        let poll_sid = sid.clone();
        // Ends, dropping the GET connection, when the PollConn is dropped
        // (`stop` with it). Not `JoinHandle::cancel`: in glommio 0.9 a task
        // cancelled while it waits is never freed.
        glommio::spawn_local(async move {
            let request = polling_request(&host, &path, Some(&poll_sid), None);
            loop {
                let polled = future::or(async { Some(get.request(&request).await) }, async {
                    stopped.recv().await;
                    None
                })
                .await;
                let Some(polled) = polled else { return };
                let result = match polled {
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
            post: HttpConn::new(spec.addr, source, spec.tls.clone()).reset_on_drop(reset.clone()),
            post_target: (spec.host.clone(), spec.path.clone(), sid),
            bodies,
            _stop: stop,
            reset,
            first: Some(body),
        })
    }

    /// When dropped, close both TCP connections with no Engine.IO close:
    /// with FINs, or with `reset` RSTs.
    pub fn close_silently(&mut self, reset: bool) {
        self.reset.set(reset);
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
