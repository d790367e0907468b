//! The relay application the `hub` binary runs: rooms and publishing over
//! plain Socket.IO events, with optional token auth (`docs/relay-protocol.md`).

pub mod expiry;
mod grant;
pub mod request;
mod sweeper;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::auth::{glob_match, TokenVerifier};
use crate::server::{
    Ack, Args, ClusterConfig, ConnectError, Io, IoBuilder, IoSettings, JoinError, NamespaceBuilder,
    RecoveryConfig, Socket,
};
use crate::socketio::raw::{split_array, Utf8Bytes};
use grant::{Grant, Refresh, TokenGrant};
use request::Refusal;
pub use sweeper::AUTH_ERROR_EVENT;

/// How the relay is configured.
#[derive(Clone)]
pub struct RelayConfig {
    /// Glob patterns of the namespaces served.
    pub namespaces: Vec<String>,
    /// With a verifier, every socket needs a valid token.
    pub auth: Option<TokenVerifier>,
    pub settings: IoSettings,
    /// A cluster on Redis to join (see `docs/cluster.md`).
    pub cluster: Option<ClusterConfig>,
    /// Connection-state recovery, when on.
    pub recovery: Option<RecoveryConfig>,
    /// More for every namespace after the relay's own: connection
    /// handlers (run after the relay's), server-side emit handlers.
    pub customize: Option<NamespaceCustomizer>,
    /// Applied to the server's builder before the relay's namespaces (an
    /// add-on's namespaces, such as the Admin UI's, come first).
    pub instrument: Option<Instrument>,
}

/// Adds to the server being built (see [`RelayConfig::instrument`]).
pub type Instrument = Arc<dyn Fn(IoBuilder) -> IoBuilder + Send + Sync>;

/// Adds to each namespace the relay serves.
pub type NamespaceCustomizer = Arc<dyn Fn(NamespaceBuilder) -> NamespaceBuilder + Send + Sync>;

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            namespaces: vec!["*".to_string()],
            auth: None,
            settings: IoSettings::default(),
            cluster: None,
            recovery: None,
            customize: None,
            instrument: None,
        }
    }
}

/// The relay as a Socket.IO server, ready to mount.
pub fn relay(config: RelayConfig) -> Io {
    // Tells this relay's per-shard state from another's on the same thread.
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
    let auth = config.auth.map(Arc::new);
    let patterns = config.namespaces;
    let customize = config.customize;
    let builder = match config.cluster {
        Some(cluster) => Io::builder().cluster(cluster),
        None => Io::builder(),
    };
    let builder = match config.recovery {
        Some(recovery) => builder.recovery(recovery),
        None => builder,
    };
    let builder = match &config.instrument {
        Some(instrument) => instrument(builder),
        None => builder,
    };
    builder
        .settings(config.settings)
        .of_dynamic(
            move |name| patterns.iter().any(|p| glob_match(p, name)),
            move |nsp| {
                let nsp = match auth.clone() {
                    Some(verifier) => {
                        nsp.use_middleware(move |socket| authenticate(&verifier, instance, socket))
                    }
                    None => nsp,
                };
                let nsp = nsp.on_connection(on_connection);
                match &customize {
                    Some(customize) => customize(nsp),
                    None => nsp,
                }
            },
        )
        .build()
}

fn unauthorized() -> ConnectError {
    ConnectError::new("unauthorized")
}

/// The token: v3/v4 clients send `auth: {token}`; v2 clients `?token=`
/// (their CONNECT query is their auth, the handshake query a fallback).
fn token(socket: &Socket) -> Option<String> {
    let handshake = socket.handshake();
    handshake
        .auth
        .get("token")
        .and_then(Value::as_str)
        .or_else(|| handshake.query_param("token"))
        .map(str::to_string)
}

fn authenticate(
    verifier: &Arc<TokenVerifier>,
    instance: u64,
    socket: &Socket,
) -> Result<(), ConnectError> {
    let token = token(socket).ok_or_else(unauthorized)?;
    let now = grant::unix_seconds(SystemTime::now());
    let claims = verifier.verify(&token, now).map_err(|error| {
        tracing::debug!(%error, nsp = socket.nsp(), "token refused");
        unauthorized()
    })?;
    let key = sweeper::next_key();
    socket.set_data(Grant::Token(TokenGrant {
        claims,
        key,
        instance,
        verifier: verifier.clone(),
    }));
    Ok(())
}

fn answer(ack: Option<Ack>, result: Result<(), Refusal>) {
    if let Some(ack) = ack {
        let args = match result {
            Ok(()) => OK.with(Args::clone),
            Err(refusal) => Args::new().arg(json!({"ok": false, "error": refusal.as_str()})),
        };
        ack.send(args);
    }
}

thread_local! {
    /// The answer to a request that succeeded, `{"ok":true}`, as JSON text:
    /// written as it is (an ack of arguments as received), not built and
    /// serialized for every publish.
    static OK: Args = Args::from_raw(
        split_array(Utf8Bytes::copy_from_str(r#"[{"ok":true}]"#), 0).expect("valid JSON"),
        Vec::new(),
    );
}

fn grant(socket: &Socket) -> Arc<Grant> {
    socket
        .data::<Grant>()
        .unwrap_or_else(|| Arc::new(Grant::Open))
}

/// A socket whose token has expired is refused, whatever it asks, and
/// disconnected at once: the sweeper may not have come by yet. True then.
fn refuse_if_expired(socket: &Socket, ack: Option<&Ack>) -> bool {
    let expired = socket
        .data::<Grant>()
        .is_some_and(|grant| grant.expired(SystemTime::now()));
    if expired {
        answer(ack.cloned(), Err(Refusal::TokenExpired));
        sweeper::end_session(socket, Refusal::TokenExpired);
    }
    expired
}

/// `refresh`: a new token replaces the socket's claims and expiry.
fn on_refresh(socket: &Socket, args: Args, ack: Option<Ack>) {
    if refuse_if_expired(socket, ack.as_ref()) {
        return;
    }
    let token = match request::refresh(args.get(0)) {
        Ok(token) => token,
        Err(refusal) => return answer(ack, Err(refusal)),
    };
    let grant = grant(socket);
    let Grant::Token(current) = &*grant else {
        // An open hub checks no token and nothing expires.
        return answer(ack, Ok(()));
    };
    let rooms = socket.rooms();
    let outcome = grant::refresh(
        &current.verifier,
        &current.claims,
        token,
        SystemTime::now(),
        socket.id(),
        rooms.iter().map(String::as_str),
    );
    match outcome {
        Refresh::Accepted { claims, leave } => {
            for room in &leave {
                socket.leave(room);
            }
            current.shard().watch(current.key, claims.exp, socket);
            tracing::debug!(
                socket = socket.id(),
                exp = claims.exp,
                left = leave.len(),
                "token refreshed"
            );
            socket.set_data(Grant::Token(TokenGrant {
                claims,
                key: current.key,
                instance: current.instance,
                verifier: current.verifier.clone(),
            }));
            answer(ack, Ok(()));
        }
        Refresh::Refused(error) => {
            tracing::debug!(%error, socket = socket.id(), "refresh token refused");
            answer(ack, Err(Refusal::Unauthorized));
        }
        Refresh::Expired | Refresh::UserMismatch => {
            let refusal = outcome.refusal().expect("a refusal");
            answer(ack, Err(refusal));
            sweeper::end_session(socket, refusal);
        }
    }
}

fn on_connection(socket: &Socket) {
    if let Grant::Token(token) = &*grant(socket) {
        if let Some(room) = token.claims.user_room() {
            socket.join(&room);
        }
    }
    sweeper::watch_new_socket(socket);
    socket.on("join", |socket, args, ack| {
        if refuse_if_expired(socket, ack.as_ref()) {
            return;
        }
        let result = request::rooms(args.get(0)).and_then(|rooms| {
            let grant = grant(socket);
            if !rooms.iter().all(|r| grant.may_join(r)) {
                return Err(Refusal::Forbidden);
            }
            socket
                .try_join_many(rooms.iter().map(String::as_str))
                .map_err(|error| match error {
                    JoinError::TooManyRooms { .. } => Refusal::TooManyRooms,
                    // Not reached from a handler: the socket is connected.
                    JoinError::Disconnected => Refusal::BadRequest,
                })
        });
        answer(ack, result);
    });
    socket.on("leave", |socket, args, ack| {
        let result = request::rooms(args.get(0)).map(|rooms| {
            for room in &rooms {
                socket.leave(room);
            }
        });
        answer(ack, result);
    });
    socket.on("publish", |socket, args, ack| {
        if refuse_if_expired(socket, ack.as_ref()) {
            return;
        }
        let result = request::publish(&args).and_then(|publish| {
            let grant = grant(socket);
            if !publish.to.iter().all(|r| grant.may_publish(r)) {
                return Err(Refusal::Forbidden);
            }
            let mut op = socket.broadcast().to_rooms(publish.to);
            if publish.volatile {
                op = op.volatile();
            }
            op.emit(&publish.event, publish.data)
                .map_err(|_| Refusal::ReservedEvent)
        });
        answer(ack, result);
    });
    socket.on("refresh", on_refresh);
    socket.on("session", |socket, _, ack| {
        if let Some(ack) = ack {
            ack.send(Args::new().arg(json!({
                "id": socket.id(),
                "recovered": socket.recovered(),
                "rooms": socket.rooms(),
            })));
        }
    });
    socket.on("echo", |_, args, ack| {
        if let Some(ack) = ack {
            ack.send(args);
        }
    });
}
