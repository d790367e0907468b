//! The recovery paths of the Socket.IO shard: offsets on what it encodes,
//! sessions kept when sockets leave, and restores, local or through the
//! shard that holds the session.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::channels::local_channel;
use glommio::timer::Timer;
use serde_json::Value;

use super::{
    count_attempt, recoverable, FailCause, KeptSession, LoggedTarget, Offset, RestoreAnswer,
    Resume, MAX_KEPT_ANSWER,
};
use crate::engineio::Sid;
use crate::server::adapter::{socket_shard, ClusterBody, ClusterMsg};
use crate::server::args::Args;
use crate::server::client::Client;
use crate::server::namespace::Nsp;
use crate::server::outgoing::{self, Outgoing};
use crate::server::reason::DisconnectReason;
use crate::server::shard::SioShard;
use crate::server::socket::{SocketData, SocketInner};
use crate::shard::context;

/// How long a restore waits for the shard holding the session; past it
/// the client gets a fresh session.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(2);

impl SioShard {
    /// Encode an EVENT for a broadcast: with recovery on, and unless it is
    /// volatile, it gets this shard's next offset as its last argument.
    pub(crate) fn encode_broadcast(
        &self,
        nsp: &str,
        event: &str,
        args: &Args,
        volatile: bool,
    ) -> (Outgoing, Option<Offset>) {
        match self.adapter.recovery.as_ref().filter(|_| !volatile) {
            None => (outgoing::event(nsp, event, args, None), None),
            Some(recovery) => {
                self.ensure_purge();
                let offset = recovery.next_offset();
                let text = offset.to_string();
                let packet = outgoing::event_with_offset(nsp, event, args, None, Some(&text));
                (packet, Some(offset))
            }
        }
    }

    /// `socket.emit` without ack, recovery on: as socket.io, it is a
    /// broadcast to the socket's own room, kept in this shard's log.
    pub(crate) fn emit_logged(
        &self,
        socket: &SocketInner,
        event: &str,
        args: &Args,
        compress: Option<bool>,
    ) {
        let (packet, offset) = self.encode_broadcast(&socket.nsp.name, event, args, false);
        let packet = packet.compress(compress);
        if let (Some(recovery), Some(offset)) = (&self.adapter.recovery, offset) {
            let target = Arc::new(LoggedTarget {
                rooms: vec![socket.id.to_string()],
                except: Vec::new(),
                local_only: true,
            });
            recovery.log(&socket.nsp.name, offset, target, packet.clone());
            self.ensure_purge();
        }
        socket.client.send(&packet, false);
    }

    /// A socket is leaving its namespace (after its `disconnecting`
    /// handlers): keep its state when the reason is recoverable.
    pub(crate) fn socket_leaving(
        &self,
        socket: &SocketInner,
        reason: DisconnectReason,
        data: Option<SocketData>,
    ) {
        let Some(recovery) = &self.adapter.recovery else {
            return;
        };
        let resume = recovery.resume_of(socket.key);
        recovery.forget_cut(socket.key);
        let Some(pid) = socket.pid.get().cloned() else {
            return;
        };
        if !recoverable(reason) {
            self.session_ended(&socket.id, &pid);
            return;
        }
        let session = KeptSession {
            sid: socket.id.to_string(),
            pid: pid.to_string(),
            nsp: socket.nsp.name.clone(),
            rooms: socket.room_names(),
            data,
            disconnected_at: Instant::now(),
            resume,
        };
        let gone = recovery.keep(session);
        self.sessions_gone(gone);
        self.ensure_purge();
    }

    /// Sessions dropped for good (expired, or past the bound): the shard
    /// their ids name forgets where they were.
    pub(crate) fn sessions_gone(&self, gone: Vec<KeptSession>) {
        if !gone.is_empty() {
            // A flood of sessions freed: the shard gives the memory back.
            crate::shard::memory::freed(gone.len());
        }
        for session in gone {
            self.session_ended(&session.sid, &session.pid);
        }
    }

    /// A socket's session ended for good on this shard.
    pub(crate) fn session_ended(&self, sid: &str, pid: &str) {
        self.record_where(sid, pid, None);
    }

    /// Where socket `sid` (private id `pid`) lives now: tell the shard
    /// its id names (or record it, on that shard).
    fn note_moved(&self, sid: &str, pid: &str, to: usize) {
        self.record_where(sid, pid, Some(to));
    }

    /// Record on the shard `sid` names where the socket lives (`None`:
    /// nowhere any more, its session ended).
    fn record_where(&self, sid: &str, pid: &str, to: Option<usize>) {
        let Some(recovery) = &self.adapter.recovery else {
            return;
        };
        match socket_shard(sid) {
            Some(home) if home != self.shard_id() => self.post_recovery(
                home,
                "",
                ClusterBody::Moved {
                    sid: sid.to_string(),
                    pid: pid.to_string(),
                    to,
                },
            ),
            _ => recovery.set_moved(sid, pid, to),
        }
    }

    fn post_recovery(&self, shard: usize, nsp: &str, body: ClusterBody) {
        let msg = ClusterMsg {
            instance: self.instance(),
            nsp: nsp.to_string(),
            body,
        };
        context::post(shard, Box::new(msg));
    }

    /// Start the shard's purge task if it does not run.
    pub(crate) fn ensure_purge(&self) {
        let Some(recovery) = &self.adapter.recovery else {
            return;
        };
        // Off the shards (a test's fixture) there is no runtime to run it.
        if context::shard_id().is_none() || recovery.purging.replace(true) {
            return;
        }
        let me = self.me().map(|s| Rc::downgrade(&s)).unwrap_or_default();
        glommio::spawn_local(super::purge_task(me, recovery.clone())).detach();
    }

    /// A CONNECT with a private id and an offset: give the session back if
    /// it is held (here, or on the shard that holds it), else a fresh one.
    pub(crate) fn restore(
        &self,
        client: &Rc<Client>,
        nsp: Rc<Nsp>,
        auth: Value,
        query: Option<&str>,
        pid: &str,
        offset: &str,
    ) {
        let Some(recovery) = self.adapter.recovery.clone() else {
            return self.open_socket(client, &nsp, auth, query, None);
        };
        let count = context::shard_count().unwrap_or(1);
        let (home, offset) = match (Sid::parse(pid), Offset::parse(offset)) {
            (Some(sid), Some(offset)) if sid.shard() < count => (sid.shard(), offset),
            _ => {
                count_attempt(Err(FailCause::Unknown));
                return self.open_socket(client, &nsp, auth, query, None);
            }
        };
        let me = self.shard_id();
        let holder = if recovery.holds(pid) {
            me
        } else if home == me {
            recovery.moved_to(pid).unwrap_or(me)
        } else {
            home
        };
        if holder == me {
            let (answer, dropped) = recovery.answer(pid, &nsp.name, offset);
            for (sid, pid) in dropped {
                self.session_ended(&sid, &pid);
            }
            count_attempt(answer.as_ref().map(|_| ()).map_err(|c| *c));
            match answer {
                Ok(session) => {
                    if socket_shard(&session.sid) == Some(me) {
                        recovery.set_moved(&session.sid, &session.pid, None);
                    }
                    self.open_socket(client, &nsp, auth, query, Some((session, Vec::new())));
                }
                Err(_) => self.open_socket(client, &nsp, auth, query, None),
            }
            return;
        }
        // Another shard holds it: ask, and wait (nothing else of this
        // client's namespace happens meanwhile).
        let request = recovery.next_request();
        let (tx, rx) = local_channel::new_bounded(1);
        recovery.waiting.borrow_mut().insert(request, tx);
        client.restoring.borrow_mut().push(nsp.name.clone());
        self.post_recovery(
            holder,
            &nsp.name,
            ClusterBody::Restore {
                origin: me,
                request,
                pid: pid.to_string(),
                offset,
            },
        );
        let Some(shard) = self.me() else {
            return;
        };
        let client = client.clone();
        let name = nsp.name.clone();
        let query = query.map(str::to_string);
        drop(nsp);
        glommio::spawn_local(async move {
            let answer = future::or(async { rx.recv().await }, async {
                Timer::new(RESTORE_TIMEOUT).await;
                None
            })
            .await;
            shard.restore_answered(&client, &name, auth, query.as_deref(), request, answer);
        })
        .detach();
    }

    /// The holder's answer came (None: it did not in time). In one
    /// synchronous step: what this shard's log holds above the holder's
    /// cut is added, and the socket joins its rooms, so no broadcast
    /// falls between the two.
    fn restore_answered(
        &self,
        client: &Rc<Client>,
        name: &str,
        auth: Value,
        query: Option<&str>,
        request: u64,
        answer: Option<RestoreAnswer>,
    ) {
        let Some(recovery) = self.adapter.recovery.clone() else {
            return;
        };
        recovery.waiting.borrow_mut().remove(&request);
        client.restoring.borrow_mut().retain(|n| n != name);
        let answer = answer.unwrap_or(Err(FailCause::Timeout));
        let nsp = match self.namespace(name) {
            Some(nsp) if !client.conn.is_closed() => nsp,
            _ => {
                // The client went meanwhile: the session is lost.
                if let Ok(session) = answer {
                    self.session_ended(&session.sid, &session.pid);
                }
                return;
            }
        };
        let outcome = answer.and_then(|mut session| {
            match recovery.replay_above(name, &session.cut, &session.rooms) {
                Ok(replay) => {
                    // From here on, this shard's log is what the socket
                    // gets live (see `Resume`).
                    // Kept so that a client whose last packet was in the
                    // answer can be placed (a long answer is not kept).
                    let answer = if session.missed.len() <= MAX_KEPT_ANSWER {
                        session.missed.iter().map(|(o, _)| *o).collect()
                    } else {
                        Vec::new().into()
                    };
                    session.resume = Some(Resume {
                        from: recovery.position(),
                        cut: session.cut.clone().into_boxed_slice(),
                        answer,
                    });
                    Ok((session, replay))
                }
                Err(cause) => {
                    self.session_ended(&session.sid, &session.pid);
                    Err(cause)
                }
            }
        });
        count_attempt(outcome.as_ref().map(|_| ()).map_err(|c| *c));
        match outcome {
            Ok(restored) => self.open_socket(client, &nsp, auth, query, Some(restored)),
            Err(_) => self.open_socket(client, &nsp, auth, query, None),
        }
    }

    /// A recovery message from another shard. Returns it when it is not one.
    pub(crate) fn on_recovery_message(&self, nsp: &str, body: ClusterBody) -> Option<ClusterBody> {
        let Some(recovery) = self.adapter.recovery.clone() else {
            return match body {
                ClusterBody::Restore {
                    origin, request, ..
                } => {
                    self.post_recovery(
                        origin,
                        nsp,
                        ClusterBody::Restored {
                            request,
                            answer: Err(FailCause::Unknown),
                        },
                    );
                    None
                }
                ClusterBody::Restored { .. } | ClusterBody::Moved { .. } => None,
                other => Some(other),
            };
        };
        match body {
            ClusterBody::Restore {
                origin,
                request,
                pid,
                offset,
            } => {
                let me = self.shard_id();
                if !recovery.holds(&pid) {
                    if let Some(to) = recovery
                        .moved_to(&pid)
                        .filter(|to| *to != me && *to != origin)
                    {
                        // Restored elsewhere since, and kept there.
                        self.post_recovery(
                            to,
                            nsp,
                            ClusterBody::Restore {
                                origin,
                                request,
                                pid,
                                offset,
                            },
                        );
                        return None;
                    }
                }
                let (answer, dropped) = recovery.answer(&pid, nsp, offset);
                for (sid, pid) in dropped {
                    self.session_ended(&sid, &pid);
                }
                let answer = answer.map(|mut session| {
                    // Recorded now, before anything else reaches this
                    // shard: an id-targeted message that comes after the
                    // answer is passed on to the socket's new shard.
                    self.note_moved(&session.sid, &session.pid, origin);
                    // In this shard's terms only: the new shard makes its own.
                    session.resume = None;
                    session
                });
                self.post_recovery(origin, nsp, ClusterBody::Restored { request, answer });
                None
            }
            ClusterBody::Restored { request, answer } => {
                let waiting = recovery.waiting.borrow();
                match waiting.get(&request) {
                    Some(tx) => {
                        let _ = tx.try_send(answer);
                    }
                    // Too late: the client has a fresh session.
                    None => {
                        drop(waiting);
                        if let Ok(session) = answer {
                            self.session_ended(&session.sid, &session.pid);
                        }
                    }
                }
                None
            }
            ClusterBody::Moved { sid, pid, to } => {
                recovery.set_moved(&sid, &pid, to);
                None
            }
            other => Some(other),
        }
    }
}
