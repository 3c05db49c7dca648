//! The async client: one connection multiplexed by request id.
//!
//! A writer task coalesces queued frames into few writes; a reader task
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
use tokio::sync::{mpsc, oneshot};

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
    out: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    limits: Limits,
    settings: Option<Settings>,
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
        let (out, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        tokio::spawn(write_loop(wr, out_rx));
        tokio::spawn(read_loop(rd, shared.clone()));
        let hello = Request::Hello(Hello { version: PROTOCOL_VERSION, client: opts.client_name.clone() });
        let answer = self.exchange(&out, &shared, &hello).await?;
        let (limits, settings) = api::answer!(answer, Hello(h) => (h.limits, h.settings))?;
        Ok(Link { out, shared, limits, settings })
    }

    async fn exchange(
        &self,
        out: &mpsc::UnboundedSender<Vec<u8>>,
        shared: &Shared,
        request: &Request,
    ) -> Result<Response, Error> {
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
        let mut frame = Vec::new();
        request.encode_frame(id, &mut frame);
        if out.send(frame).is_err() {
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

async fn write_loop(mut wr: AsyncWriter, mut frames: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = frames.recv().await {
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < 256 * 1024 {
            match frames.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() {
            // The reader decides why the link ended: the daemon may have
            // sent a parting error (BUSY, FORBIDDEN) before closing.
            return;
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
