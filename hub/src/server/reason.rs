use crate::engine::CloseReason;

/// Why a socket left its namespace, with the reference server's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The server called `socket.disconnect()`.
    ServerNamespaceDisconnect,
    /// The client disconnected the socket (`socket.disconnect()` on its side).
    ClientNamespaceDisconnect,
    /// The server is stopping.
    ServerShuttingDown,
    /// The client stopped answering heartbeats.
    PingTimeout,
    /// The connection was closed (the client left, or its transport died).
    TransportClose,
    /// The connection broke a transport rule.
    TransportError,
    /// The client sent something that does not decode.
    ParseError,
    /// The Engine.IO connection was closed by the server.
    ForcedClose,
    /// The server closed the whole connection from the Socket.IO layer.
    ForcedServerClose,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ForcedServerClose => "forced server close",
        }
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError => DisconnectReason::TransportError,
            CloseReason::ParseError => DisconnectReason::ParseError,
            // The reference has no such reason: the client broke a transport rule.
            CloseReason::PacketRateExceeded => DisconnectReason::TransportError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            CloseReason::ServerShuttingDown => DisconnectReason::ServerShuttingDown,
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
