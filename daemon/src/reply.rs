//! How answers find their way back: a mailbox per event loop, and the
//! address of a waiting request.

use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;

use crate::answer::Answer;

/// When a request was decoded, and what it was: for the latency histograms.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub opcode: u8,
    pub started: std::time::Instant,
}

/// Work handed to an event loop from other threads.
#[derive(Debug)]
pub enum Mail {
    /// A newly accepted connection for this loop to own.
    Conn(crate::net::Stream),
    /// The answer to a queued request, for the loop to turn into a response.
    Reply { token: usize, generation: u64, request_id: u32, answer: Answer, timing: Timing },
}

/// One per event loop: a queue plus the waker that interrupts its poll.
#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<Vec<Mail>>,
    waker: mio::Waker,
}

impl Mailbox {
    pub fn new(waker: mio::Waker) -> Self {
        Self { queue: Mutex::new(Vec::new()), waker }
    }

    /// Queues without waking; the sender calls [`Mailbox::wake`] once for
    /// a whole batch.
    pub fn push(&self, mail: Mail) {
        self.queue.lock().push(mail);
    }

    pub fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake an event loop");
        }
    }

    pub fn take(&self, into: &mut Vec<Mail>) {
        std::mem::swap(&mut *self.queue.lock(), into);
    }
}

/// Where the answer to a queued job goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// A request read from a connection of an event loop.
    Conn { mailbox: Arc<Mailbox>, token: usize, generation: u64, request_id: u32, timing: Timing },
    /// An in-process caller (the sweeper, tests).
    Channel(mpsc::Sender<Answer>),
    /// Nobody waits: background work such as persisting touches.
    Nobody,
}

impl ReplyTo {
    /// Delivers `answer`; returns the mailbox to wake, if any.
    pub fn deliver(self, answer: Answer) -> Option<Arc<Mailbox>> {
        match self {
            Self::Conn { mailbox, token, generation, request_id, timing } => {
                mailbox.push(Mail::Reply { token, generation, request_id, answer, timing });
                Some(mailbox)
            }
            Self::Channel(tx) => {
                // The caller may have given up waiting; nothing to do then.
                let _ = tx.send(answer);
                None
            }
            Self::Nobody => None,
        }
    }
}

/// Delivers a batch of answers, waking each mailbox once.
pub fn deliver_all(replies: impl IntoIterator<Item = (ReplyTo, Answer)>) {
    let mut to_wake: Vec<Arc<Mailbox>> = Vec::new();
    for (to, answer) in replies {
        if let Some(mb) = to.deliver(answer) {
            if !to_wake.iter().any(|m| Arc::ptr_eq(m, &mb)) {
                to_wake.push(mb);
            }
        }
    }
    for mb in to_wake {
        mb.wake();
    }
}
