/// The simplest application: every message goes back to its sender, text as
/// text and binary as binary. The conformance server and, until the
/// Socket.IO layer lands, the `hub` binary run it.
pub struct Echo;

impl super::Handler for Echo {
    fn on_open(&self, _socket: &super::Socket) {}

    fn on_message(&self, socket: &super::Socket, data: super::Data) {
        socket.send(data);
    }

    fn on_close(&self, _socket: &super::Socket, _reason: super::CloseReason) {}
}
