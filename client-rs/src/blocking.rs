//! A blocking client, for code that is not async: one request at a time
//! over one connection, reconnecting after the daemon restarts.

use std::io::{Read, Write};

use parking_lot::Mutex;
use sessiond_protocol::{
    Expiry, FrameHeader, HEADER_LEN, Hello, Limits, MAX_BODY_HARD_LIMIT, PROTOCOL_VERSION, Request, Response,
};

use crate::api::{self, Created, Session, Written};
use crate::transport::BlockingStream;
use crate::{Error, Options};

/// Placeholder until HELLO_OK brings the daemon's limits.
const UNKNOWN_LIMITS: Limits =
    Limits { max_frame: 0, max_session_bytes: 0, max_fields: 0, max_field_name: 0, max_inflight: 0 };

#[derive(Debug)]
pub struct Client {
    options: Options,
    conn: Mutex<Option<Conn>>,
}

#[derive(Debug)]
struct Conn {
    stream: BlockingStream,
    next_id: u32,
    limits: Limits,
}

impl Client {
    /// Connects and exchanges HELLO.
    pub fn connect(options: Options) -> Result<Self, Error> {
        let conn = Conn::open(&options)?;
        Ok(Self { options, conn: Mutex::new(Some(conn)) })
    }

    pub fn limits(&self) -> Result<Limits, Error> {
        let mut guard = self.conn.lock();
        Ok(self.live(&mut guard)?.limits.clone())
    }

    fn live<'a>(&self, guard: &'a mut Option<Conn>) -> Result<&'a mut Conn, Error> {
        if guard.is_none() {
            *guard = Some(Conn::open(&self.options)?);
        }
        Ok(guard.as_mut().expect("connected above"))
    }

    /// Sends one request and waits for its answer. Reads are retried once
    /// on a fresh connection if the old one broke.
    pub fn call(&self, request: Request) -> Result<Response, Error> {
        let mut guard = self.conn.lock();
        let result = self.live(&mut guard)?.exchange(&request);
        match result {
            Ok(response) => Ok(response),
            Err(e) => {
                // The stream may be out of step now: never reuse it.
                *guard = None;
                match e {
                    Error::Disconnected if api::is_idempotent(&request) => self.live(&mut guard)?.exchange(&request),
                    other => Err(other),
                }
            }
        }
    }

    api::operations!(;);
}

impl Conn {
    fn open(options: &Options) -> Result<Self, Error> {
        let stream = BlockingStream::connect(&options.endpoint, options.timeout)?;
        let mut conn = Self { stream, next_id: 1, limits: UNKNOWN_LIMITS };
        let hello = Request::Hello(Hello { version: PROTOCOL_VERSION, client: options.client_name.clone() });
        let answer = conn.exchange(&hello)?;
        conn.limits = api::answer!(answer, Hello(h) => h.limits)?;
        Ok(conn)
    }

    fn exchange(&mut self, request: &Request) -> Result<Response, Error> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut frame = Vec::new();
        request.encode_frame(id, &mut frame);
        if let Err(e) = self.stream.write_all(&frame) {
            // The daemon may have said why it closed (BUSY, FORBIDDEN).
            return match self.read_frame() {
                Ok((0, response)) => Ok(response),
                _ => Err(io_error(e)),
            };
        }
        loop {
            let (request_id, response) = self.read_frame()?;
            if request_id == id || request_id == 0 {
                return Ok(response);
            }
        }
    }

    fn read_frame(&mut self) -> Result<(u32, Response), Error> {
        let mut head = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut head).map_err(io_error)?;
        let header = FrameHeader::parse(&head, MAX_BODY_HARD_LIMIT).map_err(|e| Error::Protocol(e.to_string()))?;
        let mut body = vec![0u8; header.body_len as usize];
        self.stream.read_exact(&mut body).map_err(io_error)?;
        header.verify(&body).map_err(|e| Error::Protocol(e.to_string()))?;
        let response = Response::decode(header.opcode, &body).map_err(|e| Error::Protocol(e.to_string()))?;
        Ok((header.request_id, response))
    }
}

fn io_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted => Error::Disconnected,
        _ => Error::Io(e),
    }
}
