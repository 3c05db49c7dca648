//! The async client: one connection multiplexed by request id.
//!
//! Callers encode their frames into one shared outbox, and a writer task
//! sends whatever has gathered there in one write; a reader task
//! routes each answer to its waiting caller by request id, in whatever
//! order answers arrive. If the connection breaks, waiting callers get
//! [`Error::Disconnected`] and the next call connects again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::{Mutex, RwLock};
use sessiond_protocol::{
    Expiry, FrameHeader, HEADER_LEN, Hello, Limits, MAX_BODY_HARD_LIMIT, PROTOCOL_VERSION, Request, Response, Settings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, oneshot};

use crate::api::{self, Created, Session, Written};
use crate::transport::{AsyncReader, AsyncWriter, connect_async};
use crate::{Error, Options};

/// An async sessiond client. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: Options,
    next_id: AtomicU32,
    link: RwLock<Option<Arc<Link>>>,
    connecting: tokio::sync::Mutex<()>,
}

/// A live connection. Owned only by the client, so dropping the last clone
/// of the client ends the writer task, which closes the socket.
#[derive(Debug)]
struct Link {
    out: Arc<Outbox>,
    shared: Arc<Shared>,
    limits: Limits,
    settings: Option<Settings>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.out.close();
    }
}

/// Frames waiting for the writer task. A caller encodes its frame straight
/// into `buf` and wakes the writer only if `buf` was empty: requests made
/// while a write is under way, or in the same turn of the runtime, leave
/// together in the next one. (A channel of one `Vec` per frame woke the
/// writer for every request, and each went out in its own write: one
/// `sendto` per request at 16 in flight, and the daemon read each in its
/// own socket buffer.)
#[derive(Debug, Default)]
struct Outbox {
    buf: Mutex<Vec<u8>>,
    ready: Notify,
    /// The writer has stopped, or the client dropped the link.
    closed: AtomicBool,
}

impl Outbox {
    /// Queues one request; false if the writer has stopped.
    fn push(&self, request: &Request, id: u32) -> bool {
        let mut buf = self.buf.lock();
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let was_empty = buf.is_empty();
        request.encode_frame(id, &mut buf);
        drop(buf);
        if was_empty {
            // Stores a permit if the writer is not waiting yet: no wakeup
            // is lost.
            self.ready.notify_one();
        }
        true
    }

    fn close(&self) {
        let _guard = self.buf.lock();
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

/// What the I/O tasks and the callers share.
#[derive(Debug, Default)]
struct Shared {
    /// Callers waiting for an answer. Once `closed` is set (under this
    /// lock) nobody is added, so nobody waits forever.
    pending: Mutex<HashMap<u32, oneshot::Sender<Response>>>,
    closed: AtomicBool,
    /// The daemon's parting error (BUSY, FORBIDDEN), if it sent one: callers
    /// that come after the close get it too.
    reason: Mutex<Option<Response>>,
}

impl Shared {
    fn close(&self, reason: Option<Response>) {
        let mut pending = self.pending.lock();
        self.closed.store(true, Ordering::Release);
        for (_, waiter) in pending.drain() {
            if let Some(r) = &reason {
                let _ = waiter.send(r.clone());
            }
        }
        *self.reason.lock() = reason;
    }

    /// What a request on a closed link gets.
    fn closed_answer(&self) -> Result<Response, Error> {
        self.reason.lock().clone().ok_or(Error::Disconnected)
    }
}

impl Client {
    /// Connects and exchanges HELLO.
    pub async fn connect(options: Options) -> Result<Self, Error> {
        let client = Self {
            inner: Arc::new(Inner {
                options,
                next_id: AtomicU32::new(1),
                link: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        };
        client.link().await?;
        Ok(client)
    }

    /// The daemon's limits, as announced in HELLO.
    pub async fn limits(&self) -> Result<Limits, Error> {
        Ok(self.link().await?.limits.clone())
    }

    /// The daemon's expiry settings, as announced in HELLO (protocol
    /// version 2): what an adapter needs to agree with it on a session's life.
    pub async fn settings(&self) -> Result<Settings, Error> {
        let link = self.link().await?;
        link.settings.clone().ok_or_else(|| Error::Protocol("the daemon announced no settings".into()))
    }

    async fn link(&self) -> Result<Arc<Link>, Error> {
        if let Some(link) = self.live_link() {
            return Ok(link);
        }
        let _guard = self.inner.connecting.lock().await;
        if let Some(link) = self.live_link() {
            return Ok(link);
        }
        let link = Arc::new(self.open().await?);
        *self.inner.link.write() = Some(link.clone());
        Ok(link)
    }

    fn live_link(&self) -> Option<Arc<Link>> {
        self.inner.link.read().as_ref().filter(|l| !l.shared.closed.load(Ordering::Acquire)).cloned()
    }

    async fn open(&self) -> Result<Link, Error> {
        let opts = &self.inner.options;
        let (rd, wr) =
            tokio::time::timeout(opts.timeout, connect_async(&opts.endpoint)).await.map_err(|_| Error::Timeout)??;
        let out = Arc::new(Outbox::default());
        let shared = Arc::new(Shared::default());
        tokio::spawn(write_loop(wr, out.clone(), shared.clone()));
        tokio::spawn(read_loop(rd, shared.clone()));
        let hello = Request::Hello(Hello { version: PROTOCOL_VERSION, client: opts.client_name.clone() });
        let greeted = async {
            let answer = self.exchange(&out, &shared, &hello).await?;
            api::answer!(answer, Hello(h) => (h.limits, h.settings))
        };
        match greeted.await {
            Ok((limits, settings)) => Ok(Link { out, shared, limits, settings }),
            Err(e) => {
                // No link owns the outbox yet: end the writer here.
                out.close();
                Err(e)
            }
        }
    }

    async fn exchange(&self, out: &Outbox, shared: &Shared, request: &Request) -> Result<Response, Error> {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = shared.pending.lock();
            if shared.closed.load(Ordering::Acquire) {
                drop(pending);
                return shared.closed_answer();
            }
            pending.insert(id, tx);
        }
        if !out.push(request, id) {
            shared.pending.lock().remove(&id);
            return Err(Error::Disconnected);
        }
        match tokio::time::timeout(self.inner.options.timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(Error::Disconnected),
            Err(_) => {
                shared.pending.lock().remove(&id);
                Err(Error::Timeout)
            }
        }
    }

    fn next_id(&self) -> u32 {
        // Id 0 is reserved for the daemon's connection-level errors.
        loop {
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Sends one request and waits for its answer. Reads are retried once
    /// on a fresh connection if the old one broke; writes are not, since
    /// whether they took effect is unknown.
    pub async fn call(&self, request: Request) -> Result<Response, Error> {
        let link = self.link().await?;
        match self.exchange(&link.out, &link.shared, &request).await {
            Err(Error::Disconnected) if api::is_idempotent(&request) => {
                let link = self.link().await?;
                self.exchange(&link.out, &link.shared, &request).await
            }
            other => other,
        }
    }

    api::operations!(async; .await);
}

async fn write_loop(mut wr: AsyncWriter, outbox: Arc<Outbox>, shared: Arc<Shared>) {
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        outbox.ready.notified().await;
        if shared.pending.lock().len() > 1 {
            // Others are waiting too: let the callers the runtime has
            // ready add their frames first, so they share this write.
            tokio::task::yield_now().await;
        }
        std::mem::swap(&mut *outbox.buf.lock(), &mut out);
        if out.is_empty() {
            if outbox.closed.load(Ordering::Acquire) {
                break;
            }
            continue;
        }
        if wr.write_all(&out).await.is_err() {
            // The reader decides why the link ended: the daemon may have
            // sent a parting error (BUSY, FORBIDDEN) before closing.
            outbox.close();
            return;
        }
        out.clear();
        if out.capacity() > 1 << 20 {
            // A large session went out: give its buffer back.
            out = Vec::with_capacity(64 * 1024);
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop(rd: AsyncReader, shared: Arc<Shared>) {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut head = [0u8; HEADER_LEN];
    let mut body = Vec::new();
    let reason = loop {
        if rd.read_exact(&mut head).await.is_err() {
            break None;
        }
        let Ok(header) = FrameHeader::parse(&head, MAX_BODY_HARD_LIMIT) else {
            break None;
        };
        body.resize(header.body_len as usize, 0);
        if rd.read_exact(&mut body).await.is_err() || header.verify(&body).is_err() {
            break None;
        }
        let Ok(response) = Response::decode(header.opcode, &body) else {
            break None;
        };
        if header.request_id == 0 {
            // A connection-level error (e.g. BUSY at the connection limit):
            // every waiting caller gets it, and the connection is done.
            break Some(response);
        }
        if let Some(waiter) = shared.pending.lock().remove(&header.request_id) {
            let _ = waiter.send(response);
        }
    };
    shared.close(reason);
}
