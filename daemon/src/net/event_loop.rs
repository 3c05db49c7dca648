//! One event-loop thread.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};
use sessiond_protocol::{ErrorCode, Request, Response};
use slab::Slab;

use super::conn::{Conn, Incoming, ReadOutcome, read_capacity};
use super::refusals::Refusals;
use super::socket::PeerPolicy;
use super::transport::Stream;
use crate::reply::{Mail, Mailbox, ReplyTo, Timing};
use crate::service::{Outcome, Service};
use crate::stats::Stats;
use crate::tls::TlsServer;

const WAKER: Token = Token(usize::MAX);
/// Listener `i` has the token `usize::MAX - 1 - i`; connections count up
/// from 0, so the two never meet.
const FIRST_LISTENER: usize = usize::MAX - 1;

/// A socket the daemon accepts connections on. Every kind feeds the same
/// loops, with the same framing, limits and timeouts.
#[derive(Debug)]
pub enum Listener {
    /// Admits peers by their credentials (`LoopConfig::peers`).
    Unix(UnixListener),
    /// Admits clients by their certificate (`TlsServer::allow`).
    Tls(TcpListener, TlsServer),
    /// Admits anyone who reaches it: for loopback testing only.
    PlainTcp(TcpListener),
}

/// How often connections are checked for the idle and frame timeouts.
const TIMER_TICK: Duration = Duration::from_millis(250);

/// How long shutdown waits for in-flight requests to be answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub max_frame: u32,
    pub max_inflight: u32,
    /// A connection with this many bytes of answers unsent is served no
    /// further request until the client reads.
    pub max_output_bytes: usize,
    /// The same across every connection of every loop: past it, only
    /// connections with nothing unsent are served.
    pub max_output_total: usize,
    /// A connection whose client takes none of its pending answers for
    /// this long is closed.
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub peers: PeerPolicy,
    pub max_connections: usize,
    /// A TLS connection not through its handshake this long after it was
    /// accepted is closed.
    pub tls_handshake_timeout: Duration,
}

#[derive(Debug)]
pub struct EventLoop {
    id: usize,
    poll: Poll,
    mailbox: Arc<Mailbox>,
    /// Every loop's mailbox, this one included; used by the listener's loop.
    peers: Vec<Arc<Mailbox>>,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    next_generation: u64,
    next_peer: usize,
    service: Arc<Service>,
    config: LoopConfig,
    shutdown: Arc<AtomicBool>,
    to_drive: Vec<usize>,
    refusals: Refusals,
}

impl EventLoop {
    /// Creates a loop with its poll and mailbox. The mailbox must be handed
    /// to the other loops (see [`EventLoop::set_peers`]) before running.
    pub fn new(id: usize, service: Arc<Service>, config: LoopConfig, shutdown: Arc<AtomicBool>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        Ok(Self {
            id,
            poll,
            mailbox: Arc::new(Mailbox::new(waker)),
            peers: Vec::new(),
            listeners: Vec::new(),
            conns: Slab::new(),
            next_generation: 0,
            next_peer: 0,
            service,
            config,
            shutdown,
            to_drive: Vec::new(),
            refusals: Refusals::new(Instant::now()),
        })
    }

    pub fn mailbox(&self) -> Arc<Mailbox> {
        self.mailbox.clone()
    }

    pub fn set_peers(&mut self, peers: Vec<Arc<Mailbox>>) {
        self.peers = peers;
    }

    pub fn add_listener(&mut self, mut listener: Listener) -> io::Result<()> {
        let token = Token(FIRST_LISTENER - self.listeners.len());
        let registry = self.poll.registry();
        match &mut listener {
            Listener::Unix(l) => registry.register(l, token, Interest::READABLE)?,
            Listener::Tls(l, _) | Listener::PlainTcp(l) => registry.register(l, token, Interest::READABLE)?,
        }
        self.listeners.push(listener);
        Ok(())
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut mail = Vec::new();
        let mut drain_deadline = None;
        let mut next_tick = Instant::now() + TIMER_TICK;
        loop {
            let timeout = if drain_deadline.is_some() { Duration::from_millis(20) } else { TIMER_TICK };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed; closing this loop");
                    break;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if FIRST_LISTENER.wrapping_sub(t) < self.listeners.len() => {
                        self.accept_all(FIRST_LISTENER - t);
                    }
                    Token(t) => {
                        if let Some(conn) = self.conns.get_mut(t) {
                            conn.readable = true;
                            conn.read_closed |= event.is_read_closed() || event.is_error();
                        }
                        self.schedule(t);
                    }
                }
            }
            self.mailbox.take(&mut mail);
            for m in mail.drain(..) {
                self.receive(m);
            }
            self.drive_scheduled();
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TIMER_TICK;
                self.expire_connections();
            }
            if self.shutdown.load(Ordering::Acquire) {
                let deadline = *drain_deadline.get_or_insert_with(|| {
                    self.begin_drain();
                    Instant::now() + DRAIN_TIMEOUT
                });
                if self.conns.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
        }
        for token in self.conns.iter().map(|(t, _)| t).collect::<Vec<_>>() {
            self.close(token);
        }
        tracing::debug!(loop_id = self.id, "event loop stopped");
    }

    /// Stops accepting and reading; connections close once their in-flight
    /// requests are answered and flushed.
    fn begin_drain(&mut self) {
        for mut listener in self.listeners.drain(..) {
            let registry = self.poll.registry();
            let _ = match &mut listener {
                Listener::Unix(l) => registry.deregister(l),
                Listener::Tls(l, _) | Listener::PlainTcp(l) => registry.deregister(l),
            };
        }
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for t in tokens {
            self.conns[t].closing = true;
            self.schedule(t);
        }
        self.drive_scheduled();
    }

    /// Closes connections idle for too long, and those whose current frame
    /// has been arriving for too long (a slow sender holding a buffer).
    fn expire_connections(&mut self) {
        let now = Instant::now();
        for (uid, count) in self.refusals.roll(now) {
            tracing::warn!(?uid, count, "refused more connections from this user");
        }
        let stats = self.service.stats();
        let mut expired = Vec::new();
        for (token, conn) in self.conns.iter() {
            let idle = conn.inflight == 0
                && conn.output_pending() == 0
                && now.duration_since(conn.last_activity) >= self.config.idle_timeout;
            let slow = conn.frame_started.is_some_and(|t| now.duration_since(t) >= self.config.frame_timeout);
            // A client that reads none of its answers is never idle (they
            // are pending), so the write timeout is what ends it.
            let stuck = conn.write_stalled_since.is_some_and(|t| now.duration_since(t) >= self.config.write_timeout);
            // A handshake costs a little memory until it ends: a client
            // that starts one and stalls is closed.
            let handshake =
                conn.stream.handshaking() && now.duration_since(conn.opened) >= self.config.tls_handshake_timeout;
            // A connection part-way through a frame is a slow sender, not idle.
            if handshake {
                Stats::add(&stats.limit_tls_handshake_closed, 1);
                expired.push(token);
            } else if slow {
                Stats::add(&stats.limit_frame_timeout_closed, 1);
                expired.push(token);
            } else if stuck {
                Stats::add(&stats.limit_write_timeout_closed, 1);
                expired.push(token);
            } else if idle {
                Stats::add(&stats.limit_idle_closed, 1);
                expired.push(token);
            }
        }
        for token in expired {
            tracing::debug!("closing a connection past its idle, frame or write timeout");
            self.close(token);
        }
    }

    fn accept_all(&mut self, index: usize) {
        loop {
            let accepted = match &self.listeners[index] {
                Listener::Unix(l) => l.accept().map(|(s, _)| Some(Stream::Unix(s))),
                Listener::PlainTcp(l) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Some(Stream::Tcp(s))
                }),
                Listener::Tls(l, server) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    match rustls::ServerConnection::new(server.config.clone()) {
                        Ok(session) => Some(Stream::tls(s, session, server.allow.clone())),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot start a TLS session");
                            None
                        }
                    }
                }),
            };
            match accepted {
                Ok(Some(stream)) => self.place(stream),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors or memory: keep serving the
                    // connections we have and try again on the next event.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    /// Admits a new connection to a loop, round-robin, or refuses it at the
    /// connection limit with a BUSY frame.
    fn place(&mut self, stream: Stream) {
        let stats = self.service.stats();
        if let Err(refused) = match &stream {
            Stream::Unix(s) => self.config.peers.check(s),
            // TLS admits by certificate, after the handshake; plain TCP is
            // for loopback testing and admits anyone.
            Stream::Tcp(_) | Stream::Tls(_) => Ok(()),
        } {
            if self.refusals.refused(refused.uid, Instant::now()) {
                tracing::warn!(why = %refused.why, "refused a connection (more from this user are counted, and logged every 10 s)");
            }
            refuse(&stream, &stats.connections_forbidden, ErrorCode::Forbidden, "not allowed to use this daemon");
            return;
        }
        // `connections_active` is the one count of open connections, across
        // every loop: the limit is enforced on it.
        let active = stats.connections_active.fetch_add(1, Ordering::AcqRel);
        if active >= self.config.max_connections as u64 {
            stats.connections_active.fetch_sub(1, Ordering::AcqRel);
            refuse(&stream, &stats.connections_refused, ErrorCode::Busy, "connection limit reached");
            return;
        }
        Stats::add(&stats.connections_accepted, 1);
        let target = self.next_peer % self.peers.len().max(1);
        self.next_peer = self.next_peer.wrapping_add(1);
        if target == self.id || self.peers.is_empty() {
            self.register(stream);
        } else {
            self.peers[target].push(Mail::Conn(stream));
            self.peers[target].wake();
        }
    }

    fn register(&mut self, mut stream: Stream) {
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self.poll.registry().register(&mut stream, Token(token), Interest::READABLE) {
            tracing::warn!(error = %e, "cannot register a connection");
            self.forget_connection();
            return;
        }
        self.next_generation += 1;
        entry.insert(Conn::new(stream, self.next_generation));
        self.schedule(token);
    }

    fn receive(&mut self, mail: Mail) {
        match mail {
            Mail::Conn(stream) => self.register(stream),
            Mail::Reply { token, generation, request_id, answer, timing } => {
                self.service.stats().latency(timing.opcode, timing.started);
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                if conn.generation != generation {
                    return;
                }
                conn.inflight -= 1;
                conn.last_activity = Instant::now();
                let response = crate::service::respond(answer);
                count_error(self.service.stats(), &response);
                conn.push_response(request_id, &response);
                self.schedule(token);
            }
        }
    }

    fn schedule(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.scheduled {
                conn.scheduled = true;
                self.to_drive.push(token);
            }
        }
    }

    fn drive_scheduled(&mut self) {
        let mut tokens = std::mem::take(&mut self.to_drive);
        for token in tokens.drain(..) {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.scheduled = false;
                self.drive(token);
            }
        }
        self.to_drive = tokens;
    }

    /// Serves buffered frames and reads more while the connection may take
    /// more work, then flushes its answers once. Reads continue until the
    /// socket is drained, as edge-triggered polling requires, unless
    /// backpressure stops them; whatever lifts the backpressure (an answer,
    /// a flush) drives the connection again.
    ///
    /// Two kinds of backpressure, both stopping reads and service alike:
    /// `max_inflight` writes waiting for the writer, and answers waiting for
    /// the client (`max_output_bytes` on this connection, or
    /// `max_output_total` across all of them). Answers are encoded only
    /// while there is room, so a connection holds at most its output limit
    /// plus one answer, plus the small answers of its in-flight writes; a
    /// client that reads gets every answer however large, and one that
    /// stops reading is closed by the write timeout.
    ///
    /// A read that returns fewer bytes than asked for shows the socket
    /// drained (a stream socket's read takes all that is queued, up to the
    /// size asked), so no read is spent on the `WouldBlock` that would
    /// follow, and a drive for an answer does not read at all: one system
    /// call fewer per request (tokio's streams do the same). The peer's
    /// close can only be seen by reading on, so after a close event reads go
    /// on to EOF. (A read also stops short at an out-of-band mark; a client
    /// sending out-of-band data can only stall its own connection, which
    /// the idle and frame timeouts then close.)
    fn drive(&mut self, token: usize) {
        let capacity = read_capacity(self.config.max_frame);
        let mut served = 0;
        loop {
            served += self.serve_frames(token);
            if self.output_full(&self.conns[token]) {
                // Send what the socket takes now; go on only if that made room.
                if !self.flush(token) {
                    return;
                }
                if self.output_full(&self.conns[token]) {
                    let conn = &mut self.conns[token];
                    if !conn.output_paused {
                        conn.output_paused = true;
                        Stats::add(&self.service.stats().limit_output_paused, 1);
                    }
                    break;
                }
                self.conns[token].output_paused = false;
                continue;
            }
            let conn = &mut self.conns[token];
            if conn.inflight >= self.config.max_inflight {
                if !conn.paused {
                    conn.paused = true;
                    Stats::add(&self.service.stats().limit_inflight_paused, 1);
                }
                break;
            }
            conn.paused = false;
            if conn.closing || conn.peer_eof || !conn.readable {
                break;
            }
            match conn.read_some(capacity) {
                Ok(ReadOutcome::Data { drained }) => conn.readable = !drained || conn.read_closed,
                Ok(ReadOutcome::WouldBlock) => {
                    conn.readable = false;
                    break;
                }
                Ok(ReadOutcome::Eof) => {
                    conn.peer_eof = true;
                    break;
                }
                Err(e) => {
                    self.read_failed(token, &e);
                    return;
                }
            }
        }
        // The frame timeout runs from the first byte of each frame.
        let conn = &mut self.conns[token];
        if !conn.partial_frame() {
            conn.frame_started = None;
        } else if served > 0 || conn.frame_started.is_none() {
            conn.frame_started = Some(Instant::now());
        }
        if self.flush(token) {
            self.finish(token);
        }
    }

    /// Whether the connection's unsent answers hold it back from serving
    /// another request.
    fn output_full(&self, conn: &Conn) -> bool {
        let pending = conn.output_pending();
        pending >= self.config.max_output_bytes
            || (pending > 0
                && self.service.stats().output_buffered_bytes.load(Ordering::Relaxed)
                    >= self.config.max_output_total as u64)
    }

    /// Serves the whole frames buffered; returns how many.
    fn serve_frames(&mut self, token: usize) -> usize {
        let mut served = 0;
        loop {
            let conn = &self.conns[token];
            if conn.closing || conn.inflight >= self.config.max_inflight || self.output_full(conn) {
                return served;
            }
            let conn = &mut self.conns[token];
            match conn.next_frame(self.config.max_frame) {
                Incoming::Nothing => return served,
                Incoming::Request(id, request) => self.dispatch(token, id, request),
                Incoming::Bad { request_id, code, message } => {
                    Stats::add(&self.service.stats().frames_rejected, 1);
                    tracing::debug!(%code, %message, "rejected a frame; closing the connection");
                    self.answer(token, request_id, Response::error(code, message));
                    self.conns[token].closing = true;
                    return served + 1;
                }
            }
            served += 1;
        }
    }

    fn dispatch(&mut self, token: usize, request_id: u32, request: Request) {
        let conn = &mut self.conns[token];
        let first = !conn.greeted;
        if first && !matches!(request, Request::Hello(_)) {
            conn.closing = true;
            self.answer(
                token,
                request_id,
                Response::error(ErrorCode::HelloRequired, "the first request must be HELLO"),
            );
            return;
        }
        let generation = conn.generation;
        let mailbox = &self.mailbox;
        let timing = Timing { opcode: request.opcode(), started: Instant::now() };
        // The operation only: requests carry keys, which are never logged.
        tracing::trace!(op = request.name(), request_id, "request");
        let reply = || ReplyTo::Conn { mailbox: mailbox.clone(), token, generation, request_id, timing };
        match self.service.handle(request, reply) {
            Outcome::Queued => self.conns[token].inflight += 1,
            Outcome::Now(response) => {
                self.service.stats().latency(timing.opcode, timing.started);
                let conn = &mut self.conns[token];
                if first {
                    // A refused HELLO ends the connection.
                    conn.greeted = !matches!(response, Response::Error(_));
                    conn.closing = !conn.greeted;
                }
                self.answer(token, request_id, response);
            }
            Outcome::Session(answer) => {
                self.service.stats().latency(timing.opcode, timing.started);
                answer.body().encode_frame(request_id, self.conns[token].output());
            }
        }
    }

    fn answer(&mut self, token: usize, request_id: u32, response: Response) {
        count_error(self.service.stats(), &response);
        self.conns[token].push_response(request_id, &response);
    }

    /// Writes what the socket takes and asks to hear when it takes more;
    /// false if the connection failed and is closed.
    fn flush(&mut self, token: usize) -> bool {
        let conn = &mut self.conns[token];
        let done = match conn.flush() {
            Ok(done) => done,
            Err(e) => {
                tracing::debug!(error = %e, "write failed; closing the connection");
                self.close(token);
                return false;
            }
        };
        self.account(token);
        let conn = &mut self.conns[token];
        if done == conn.write_interest {
            let interest = if done { Interest::READABLE } else { Interest::READABLE | Interest::WRITABLE };
            conn.write_interest = !done;
            if let Err(e) = self.poll.registry().reregister(&mut conn.stream, Token(token), interest) {
                tracing::debug!(error = %e, "reregister failed; closing the connection");
                self.close(token);
                return false;
            }
        }
        true
    }

    /// Closes a connection that is done: closing or at EOF, with every
    /// answer sent.
    fn finish(&mut self, token: usize) {
        let conn = &self.conns[token];
        if conn.all_sent() && conn.inflight == 0 && (conn.closing || conn.peer_eof) {
            self.close(token);
        }
    }

    /// Brings the loops' shared total of unsent answers in line with this
    /// connection's.
    fn account(&mut self, token: usize) {
        let conn = &mut self.conns[token];
        let pending = conn.output_pending();
        let total = &self.service.stats().output_buffered_bytes;
        if pending >= conn.accounted {
            total.fetch_add((pending - conn.accounted) as u64, Ordering::Relaxed);
        } else {
            total.fetch_sub((conn.accounted - pending) as u64, Ordering::Relaxed);
        }
        conn.accounted = pending;
    }

    fn close(&mut self, token: usize) {
        if let Some(mut conn) = self.conns.try_remove(token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.service.stats().output_buffered_bytes.fetch_sub(conn.accounted as u64, Ordering::Relaxed);
            self.forget_connection();
        }
    }

    /// Closes a connection whose stream failed; a TLS client turned away
    /// for its certificate, or a failed handshake, is counted (and the
    /// former logged, at a bounded rate).
    fn read_failed(&mut self, token: usize, e: &io::Error) {
        let stats = self.service.stats();
        let tls = matches!(self.conns[token].stream, Stream::Tls(_));
        match e.kind() {
            io::ErrorKind::PermissionDenied if tls => {
                Stats::add(&stats.connections_forbidden, 1);
                if self.refusals.refused(None, Instant::now()) {
                    tracing::warn!(why = %e, "refused a TLS client (more are counted, and logged every 10 s)");
                }
            }
            io::ErrorKind::InvalidData if tls && self.conns[token].stream.handshaking() => {
                Stats::add(&stats.tls_handshakes_failed, 1);
                tracing::debug!(error = %e, "TLS handshake failed; closing the connection");
            }
            _ => tracing::debug!(error = %e, "read failed; closing the connection"),
        }
        self.close(token);
    }

    fn forget_connection(&self) {
        self.service.stats().connections_active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Turns a connection away with a parting error (request id 0), counted.
fn refuse(stream: &Stream, counter: &std::sync::atomic::AtomicU64, code: ErrorCode, message: &str) {
    Stats::add(counter, 1);
    let mut out = Vec::new();
    Response::error(code, message).encode_frame(0, &mut out);
    // Best effort: the connection ends either way.
    stream.write_parting(&out);
}

fn count_error(stats: &Stats, response: &Response) {
    if let Response::Error(e) = response {
        if let Some(code) = ErrorCode::from_u16(e.code) {
            stats.error(code);
        }
    }
}
