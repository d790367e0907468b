//! One Engine.IO connection as the Socket.IO layer sees it: its packet
//! decoder and the sockets it has opened in namespaces.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use smallvec::SmallVec;

use super::outgoing::Outgoing;
use super::socket::SocketInner;
use crate::engine::{BroadcastSends, Data, Socket as EngineSocket, Tally};
use crate::socketio::{Decoder, Protocol};

pub(crate) struct Client {
    pub conn: EngineSocket,
    pub protocol: Protocol,
    pub decoder: RefCell<Decoder>,
    /// Room for one in place: most connections open one namespace, and a
    /// `Vec` would allocate room for four (48 bytes of heap per
    /// connection); the same 24 bytes in the client either way.
    sockets: RefCell<SmallVec<[Rc<SocketInner>; 1]>>,
    /// No namespace joined yet: the connection closes at the connect timeout.
    pub awaiting_connect: Cell<bool>,
    /// Namespaces whose CONNECT waits for another shard's recovery answer.
    pub restoring: RefCell<Vec<String>>,
}

impl Client {
    pub fn new(conn: EngineSocket, protocol: Protocol, max_attachments: usize) -> Client {
        Client {
            conn,
            protocol,
            decoder: RefCell::new(Decoder::new(protocol, max_attachments)),
            sockets: RefCell::new(SmallVec::new()),
            awaiting_connect: Cell::new(false),
            restoring: RefCell::new(Vec::new()),
        }
    }

    /// Queue an encoded packet; its text and attachments are shared, not copied.
    /// A volatile packet is dropped when the transport cannot take it now.
    pub fn send(&self, packet: &Outgoing, volatile: bool) -> bool {
        let mut tally = Tally::default();
        let mut sends = BroadcastSends::new(&packet.text);
        let sent = self.send_broadcast(packet, &mut sends, volatile, &mut tally);
        tally.add_deliveries(u64::from(sent), sends.len());
        tally.flush();
        sent
    }

    /// As [`Client::send`], for a packet to this client only: its text
    /// moves into the queue. (Sharing it would set up a reference count
    /// for a single owner: an allocation per packet.)
    pub fn send_owned(&self, packet: Outgoing, volatile: bool) -> bool {
        if volatile && !self.conn.writable() {
            crate::metrics::with(|m| {
                m.volatile_dropped.inc();
            });
            return false;
        }
        let mut tally = Tally::default();
        let sent = self.conn.send_tallied(Data::Text(packet.text), &mut tally);
        // Most packets have no attachments: no iterator to make and drop.
        if sent && !packet.attachments.is_empty() {
            for attachment in packet.attachments {
                self.conn.send_tallied(Data::Binary(attachment), &mut tally);
            }
        }
        tally.flush();
        sent
    }

    /// As [`Client::send`], for broadcasts: the metrics are counted once
    /// for every recipient together (see [`Tally`]). The text (sent
    /// through `sends`) is not tallied here: the walk adds them for all
    /// the recipients that took the packet ([`Tally::add_deliveries`]);
    /// the attachments are.
    // Inlined into the room walk: without the hint the compiler stopped
    // inlining it once the walk took a skip closure (fanout 516 -> 550
    // instructions per delivery, `scripts/instructions`).
    #[inline]
    pub fn send_broadcast(
        &self,
        packet: &Outgoing,
        sends: &mut BroadcastSends,
        volatile: bool,
        tally: &mut Tally,
    ) -> bool {
        if volatile && !self.conn.writable() {
            crate::metrics::with(|m| {
                m.volatile_dropped.inc();
            });
            return false;
        }
        if !self.conn.send_broadcast_text(sends) {
            return false;
        }
        for attachment in &packet.attachments {
            self.conn
                .send_tallied(Data::Binary(attachment.clone()), tally);
        }
        true
    }

    pub fn socket(&self, nsp: &str) -> Option<Rc<SocketInner>> {
        self.sockets
            .borrow()
            .iter()
            .find(|s| s.nsp.name == nsp)
            .cloned()
    }

    /// How many namespaces the connection has open.
    pub fn socket_count(&self) -> usize {
        self.sockets.borrow().len()
    }

    pub fn add(&self, socket: Rc<SocketInner>) {
        self.sockets.borrow_mut().push(socket);
        self.awaiting_connect.set(false);
    }

    pub fn remove(&self, socket: &SocketInner) {
        self.sockets
            .borrow_mut()
            .retain(|s| !std::ptr::eq(&**s, socket));
    }

    pub fn sockets_snapshot(&self) -> Vec<Rc<SocketInner>> {
        self.sockets.borrow().to_vec()
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.sockets
            .borrow()
            .iter()
            .map(|s| s.nsp.name.clone())
            .collect()
    }
}
