//! The relay application the `hub` binary runs: rooms and publishing over
//! plain Socket.IO events, with optional token auth (`docs/relay-protocol.md`).

pub mod expiry;
pub mod request;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::auth::{glob_match, Claims, TokenVerifier};
use crate::server::{Ack, Args, ConnectError, Io, IoSettings, Socket};
use request::Refusal;

/// How the relay is configured.
#[derive(Clone)]
pub struct RelayConfig {
    /// Glob patterns of the namespaces served.
    pub namespaces: Vec<String>,
    /// With a verifier, every socket needs a valid token.
    pub auth: Option<TokenVerifier>,
    pub settings: IoSettings,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            namespaces: vec!["*".to_string()],
            auth: None,
            settings: IoSettings::default(),
        }
    }
}

/// The relay as a Socket.IO server, ready to mount.
pub fn relay(config: RelayConfig) -> Io {
    let auth = config.auth.map(Arc::new);
    let patterns = config.namespaces;
    Io::builder()
        .settings(config.settings)
        .of_dynamic(
            move |name| patterns.iter().any(|p| glob_match(p, name)),
            move |nsp| {
                let nsp = match auth.clone() {
                    Some(verifier) => {
                        nsp.use_middleware(move |socket| authenticate(&verifier, socket))
                    }
                    None => nsp,
                };
                nsp.on_connection(on_connection)
            },
        )
        .build()
}

/// What a socket may do: everything (open hub) or what its token says.
enum Grant {
    Open,
    Token(Claims),
}

impl Grant {
    fn may_join(&self, room: &str) -> bool {
        match self {
            Grant::Open => true,
            Grant::Token(claims) => claims.may_join(room),
        }
    }

    fn may_publish(&self, room: &str) -> bool {
        match self {
            Grant::Open => true,
            Grant::Token(claims) => claims.may_publish(room),
        }
    }
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

fn authenticate(verifier: &TokenVerifier, socket: &Socket) -> Result<(), ConnectError> {
    let token = token(socket).ok_or_else(unauthorized)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = verifier.verify(&token, now).map_err(|error| {
        tracing::debug!(%error, nsp = socket.nsp(), "token refused");
        unauthorized()
    })?;
    socket.set_data(Grant::Token(claims));
    Ok(())
}

fn answer(ack: Option<Ack>, result: Result<(), Refusal>) {
    if let Some(ack) = ack {
        let body = match result {
            Ok(()) => json!({"ok": true}),
            Err(refusal) => json!({"ok": false, "error": refusal.as_str()}),
        };
        ack.send(Args::new().arg(body));
    }
}

fn grant(socket: &Socket) -> Rc<Grant> {
    socket
        .data::<Grant>()
        .unwrap_or_else(|| Rc::new(Grant::Open))
}

fn on_connection(socket: &Socket) {
    if let Grant::Token(claims) = &*grant(socket) {
        if let Some(room) = claims.user_room() {
            socket.join(&room);
        }
    }
    socket.on("join", |socket, args, ack| {
        let result = request::rooms(args.get(0)).and_then(|rooms| {
            let grant = grant(socket);
            if !rooms.iter().all(|r| grant.may_join(r)) {
                return Err(Refusal::Forbidden);
            }
            socket.join_many(rooms.iter().map(String::as_str));
            Ok(())
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
        let result = request::publish(&args).and_then(|publish| {
            let grant = grant(socket);
            if !publish.to.iter().all(|r| grant.may_publish(r)) {
                return Err(Refusal::Forbidden);
            }
            let mut op = socket
                .broadcast()
                .to_many(publish.to.iter().map(String::as_str));
            if publish.volatile {
                op = op.volatile();
            }
            op.emit(&publish.event, publish.data)
                .map_err(|_| Refusal::ReservedEvent)
        });
        answer(ack, result);
    });
    socket.on("echo", |_, args, ack| {
        if let Some(ack) = ack {
            ack.send(args);
        }
    });
}
