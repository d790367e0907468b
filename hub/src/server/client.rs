//! One Engine.IO connection as the Socket.IO layer sees it: its packet
//! decoder and the sockets it has opened in namespaces.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::outgoing::Outgoing;
use super::socket::SocketInner;
use crate::engine::{Data, Socket as EngineSocket};
use crate::socketio::{Decoder, Protocol};

pub(crate) struct Client {
    pub conn: EngineSocket,
    pub protocol: Protocol,
    pub decoder: RefCell<Decoder>,
    sockets: RefCell<Vec<Rc<SocketInner>>>,
    /// No namespace joined yet: the connection closes at the connect timeout.
    pub awaiting_connect: Cell<bool>,
}

impl Client {
    pub fn new(conn: EngineSocket, protocol: Protocol, max_attachments: usize) -> Client {
        Client {
            conn,
            protocol,
            decoder: RefCell::new(Decoder::new(protocol, max_attachments)),
            sockets: RefCell::new(Vec::new()),
            awaiting_connect: Cell::new(false),
        }
    }

    /// Queue an encoded packet; its text and attachments are shared, not copied.
    /// A volatile packet is dropped when the transport cannot take it now.
    pub fn send(&self, packet: &Outgoing, volatile: bool) -> bool {
        if volatile && !self.conn.writable() {
            crate::metrics::with(|m| {
                m.volatile_dropped.inc();
            });
            return false;
        }
        if !self.conn.send(Data::Text(packet.text.clone())) {
            return false;
        }
        for attachment in &packet.attachments {
            self.conn.send(Data::Binary(attachment.clone()));
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
        self.sockets.borrow().clone()
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.sockets
            .borrow()
            .iter()
            .map(|s| s.nsp.name.clone())
            .collect()
    }
}
