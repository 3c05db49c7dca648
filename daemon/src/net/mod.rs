//! The network layer: a fixed set of mio event-loop threads that own the
//! connections. Loop 0 also owns the listener and deals new connections
//! round-robin to every loop through their mailboxes.
//!
//! Each wakeup reads everything available, decodes every whole frame,
//! answers reads at once, queues writes to the writer, and flushes each
//! connection's answers with as few write calls as it can. Answers carry the
//! request id and may leave out of order.

mod conn;
mod event_loop;
mod refusals;
mod socket;
mod transport;

pub use event_loop::Listener;
pub use event_loop::{EventLoop, LoopConfig};
pub use socket::{PeerPolicy, SocketError, SocketOptions, bind_socket};
pub use transport::Stream;
