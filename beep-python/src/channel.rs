//! `vortex.Channel`: sending (PyVortex `send_msg`, `send_rpy`, `send_err`,
//! `send_ans_rpy`, `finalize_ans_rpy`), the frame-received and close
//! handlers, closing; and the Pythonic `send`, `request`, `reply`.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use beep_blocking::{Error, Reply};
use beep_proto::{IncomingMessage, MessageKind, MsgNo};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::connection::{ConnInner, ConnRef, Connection};
use crate::errors;
use crate::frame::{self, Frame};
use crate::handler::{PyHandler, with_gil};

/// The handlers a channel gets when it is opened.
pub(crate) struct Handlers {
    /// `frame_received(conn, channel, frame, data)`.
    pub(crate) frame_received: Option<PyHandler>,
    /// `close(channel_num, conn, data)`.
    pub(crate) close: Option<PyHandler>,
}

/// A channel (PyVortex `vortex.Channel`). Sending calls release the GIL
/// while they wait for room; PyVortex's `send_*` return None/False on
/// failure (the reason goes to the connection's `pop_channel_error()`),
/// the Pythonic `send`, `request` and `reply` raise instead.
///
/// Payloads are `bytes` or `str`; PyVortex's `size` argument may be left
/// out (`channel.send_msg(b"data")`).
#[pyclass(frozen, name = "Channel", module = "vortex")]
pub struct Channel {
    pub(crate) chan: beep_blocking::Channel,
    pub(crate) conn: Arc<ConnInner>,
    profile: Option<String>,
}

/// The Python handle of a channel of `conn`.
pub(crate) fn wrap<'py>(
    py: Python<'py>,
    chan: beep_blocking::Channel,
    conn: Arc<ConnInner>,
) -> PyResult<Bound<'py, Channel>> {
    let profile = chan.profile();
    Bound::new(
        py,
        Channel {
            chan,
            conn,
            profile,
        },
    )
}

/// The Python handle of a channel just opened, with its handlers installed.
pub(crate) fn adopt<'py>(
    py: Python<'py>,
    chan: beep_blocking::Channel,
    conn: Arc<ConnInner>,
    handlers: Handlers,
) -> PyResult<Bound<'py, Channel>> {
    let connref = ConnRef::of(py, &conn);
    if let Some(handler) = handlers.frame_received {
        install_frame_received(py, &chan, handler, connref.clone());
    }
    if let Some(handler) = handlers.close {
        install_close(py, &chan, handler, connref);
    }
    wrap(py, chan, conn)
}

/// The driver's message handler that calls `handler(conn, channel, frame,
/// data)`. An exception answers a MSG the handler left unanswered with an
/// ERR (as a failing Rust handler does).
pub(crate) fn message_handler(
    handler: Option<PyHandler>,
    connref: Arc<ConnRef>,
) -> impl Fn(&beep_blocking::Channel, IncomingMessage) -> Result<(), String> + Send + Sync + 'static
{
    move |chan, m| {
        let Some(handler) = &handler else {
            return match m.kind {
                MessageKind::Msg => Err("no frame received handler for this profile".into()),
                _ => Ok(()),
            };
        };
        let ran = with_gil(|py| {
            let conn = connref.resolve(py, chan.connection());
            let args = (|| -> PyResult<_> {
                let conn_obj = Connection::wrap(py, conn.clone())?.into_any();
                let chan_obj = wrap(py, chan.clone(), conn)?.into_any();
                let frame_obj = Bound::new(py, Frame::from_message(m))?.into_any();
                Ok(vec![conn_obj, chan_obj, frame_obj])
            })();
            match args {
                Ok(args) => handler.call(py, "frame received handler", args).is_some(),
                Err(e) => {
                    errors::report(py, "frame received handler", e);
                    false
                }
            }
        });
        match ran {
            Some(true) => Ok(()),
            Some(false) => Err("the frame received handler failed".into()),
            None => Err("the Python interpreter is shutting down".into()),
        }
    }
}

/// Installs `handler` as the channel's frame-received handler.
pub(crate) fn install_frame_received(
    py: Python<'_>,
    chan: &beep_blocking::Channel,
    handler: PyHandler,
    connref: Arc<ConnRef>,
) {
    let f = message_handler(Some(handler), connref);
    let chan = chan.clone();
    // Without the GIL: the handler replaced is dropped under the driver's
    // lock, and must not run Python code there.
    py.detach(move || chan.set_message_handler(f));
}

/// Asks `handler(channel_num, conn, data)` whether to accept a close; an
/// exception (or no interpreter) agrees, as a panicking Rust close handler
/// does.
pub(crate) fn ask_close(
    handler: &PyHandler,
    connref: &ConnRef,
    number: u32,
    conn: &beep_blocking::Connection,
) -> bool {
    with_gil(|py| {
        let conn = connref.resolve(py, conn);
        let args = (|| -> PyResult<_> {
            Ok(vec![
                number.into_pyobject(py)?.into_any(),
                Connection::wrap(py, conn)?.into_any(),
            ])
        })();
        match args {
            Ok(args) => handler
                .call(py, "channel close handler", args)
                .is_none_or(|answer| answer.is_truthy().unwrap_or(true)),
            Err(e) => {
                errors::report(py, "channel close handler", e);
                true
            }
        }
    })
    .unwrap_or(true)
}

/// Installs `handler` as the channel's close handler.
fn install_close(
    py: Python<'_>,
    chan: &beep_blocking::Channel,
    handler: PyHandler,
    connref: Arc<ConnRef>,
) {
    let chan = chan.clone();
    py.detach(move || {
        chan.set_close_handler(move |chan, _request| {
            ask_close(&handler, &connref, chan.number(), chan.connection())
        })
    });
}

/// A message number from Python: an `int`, or the `Frame` being answered.
fn msgno(py: Python<'_>, msg_no: Option<&Bound<'_, PyAny>>) -> PyResult<MsgNo> {
    let Some(msg_no) = msg_no else {
        return Err(errors::usage(py, "msg_no is required (the MSG to answer)"));
    };
    if let Ok(frame) = msg_no.cast::<Frame>() {
        return Ok(MsgNo(frame.get().msgno));
    }
    Ok(MsgNo(msg_no.extract().map_err(|_| {
        errors::usage(py, "msg_no is an int (or the Frame answered)")
    })?))
}

/// What a blocking send gives PyVortex: the value, or None after recording
/// the error.
fn recorded<T>(conn: &ConnInner, result: Result<T, Error>) -> Option<T> {
    result.map_err(|e| conn.push_error(&e)).ok()
}

impl Channel {
    /// Runs a send with the GIL released.
    fn sending<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&beep_blocking::Channel) -> Result<T, Error> + Send,
    ) -> Result<T, Error> {
        let chan = &self.chan;
        py.detach(move || f(chan))
    }
}

#[pymethods]
impl Channel {
    /// The channel number.
    #[getter]
    fn number(&self) -> u32 {
        self.chan.number()
    }

    /// The profile URI the channel runs.
    #[getter]
    fn profile(&self) -> Option<String> {
        self.profile.clone().or_else(|| self.chan.profile())
    }

    /// The connection.
    #[getter]
    fn conn<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Connection>> {
        Connection::wrap(py, self.conn.clone())
    }

    /// The context.
    #[getter]
    fn ctx(&self, py: Python<'_>) -> Py<PyAny> {
        self.conn
            .ctx
            .as_ref()
            .map_or_else(|| py.None(), |c| c.clone_ref(py).into_any())
    }

    /// True while the channel is open.
    fn is_ready(&self) -> bool {
        self.chan.profile().is_some()
    }

    /// True while the channel is open.
    fn is_opened(&self) -> bool {
        self.is_ready()
    }

    /// Sends a MSG (PyVortex `send_msg(content, size)`); returns its
    /// msg_no, or None on failure. `size` is optional.
    #[pyo3(signature = (content, size=None))]
    fn send_msg(
        &self,
        py: Python<'_>,
        content: &Bound<'_, PyAny>,
        size: Option<i64>,
    ) -> PyResult<Option<u32>> {
        let m = frame::payload(py, content, size)?;
        let sent = self.sending(py, move |c| c.send_msg(m));
        Ok(recorded(&self.conn, sent).map(|n| n.0))
    }

    /// Answers MSG `msg_no` with RPY (PyVortex `send_rpy(content, size,
    /// msg_no)`); True once queued. Leave `size` out with `msg_no=`.
    #[pyo3(signature = (content, size=None, msg_no=None))]
    fn send_rpy(
        &self,
        py: Python<'_>,
        content: &Bound<'_, PyAny>,
        size: Option<i64>,
        msg_no: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let (m, n) = (frame::payload(py, content, size)?, msgno(py, msg_no)?);
        let sent = self.sending(py, move |c| c.reply_rpy(n, m));
        Ok(recorded(&self.conn, sent).is_some())
    }

    /// Answers MSG `msg_no` with ERR; True once queued.
    #[pyo3(signature = (content, size=None, msg_no=None))]
    fn send_err(
        &self,
        py: Python<'_>,
        content: &Bound<'_, PyAny>,
        size: Option<i64>,
        msg_no: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let (m, n) = (frame::payload(py, content, size)?, msgno(py, msg_no)?);
        let sent = self.sending(py, move |c| c.reply_err(n, m));
        Ok(recorded(&self.conn, sent).is_some())
    }

    /// Sends one ANS to MSG `msg_no`; True once queued.
    #[pyo3(signature = (content, size=None, msg_no=None))]
    fn send_ans_rpy(
        &self,
        py: Python<'_>,
        content: &Bound<'_, PyAny>,
        size: Option<i64>,
        msg_no: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let (m, n) = (frame::payload(py, content, size)?, msgno(py, msg_no)?);
        let sent = self.sending(py, move |c| c.reply_ans(n, m));
        Ok(recorded(&self.conn, sent).is_some())
    }

    /// Ends the answers to MSG `msg_no` with NUL; True once queued.
    fn finalize_ans_rpy(&self, py: Python<'_>, msg_no: &Bound<'_, PyAny>) -> PyResult<bool> {
        let n = msgno(py, Some(msg_no))?;
        let sent = self.sending(py, move |c| c.reply_nul(n));
        Ok(recorded(&self.conn, sent).is_some())
    }

    /// Sends a MSG and returns its msg_no; raises on failure.
    fn send(&self, py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<u32> {
        let m = frame::payload(py, payload, None)?;
        self.sending(py, move |c| c.send_msg(m))
            .map(|n| n.0)
            .map_err(|e| errors::to_pyerr(py, &e))
    }

    /// Answers `to` (a `Frame` or a msg_no): RPY, or ERR with
    /// `error=True`; raises on failure.
    #[pyo3(signature = (to, payload, *, error=false))]
    fn reply(
        &self,
        py: Python<'_>,
        to: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        error: bool,
    ) -> PyResult<()> {
        let (m, n) = (frame::payload(py, payload, None)?, msgno(py, Some(to))?);
        let sent = self.sending(py, move |c| {
            if error {
                c.reply_err(n, m)
            } else {
                c.reply_rpy(n, m)
            }
        });
        sent.map_err(|e| errors::to_pyerr(py, &e))
    }

    /// Sends a MSG and waits for its reply (GIL released, Ctrl-C honoured):
    /// a `Frame` (RPY, or ERR), or the list of ANS frames for a
    /// one-to-many reply. Raises `vortex.TimeoutError` after `timeout`
    /// seconds (default: none), and the other typed errors.
    #[pyo3(signature = (payload, timeout=None))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        payload: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let m = frame::payload(py, payload, None)?;
        // A timeout too large for a deadline waits for ever, as None does.
        let deadline = timeout
            .and_then(|t| Duration::try_from_secs_f64(t.max(0.0)).ok())
            .and_then(|t| Instant::now().checked_add(t));
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self.sending(py, move |c| {
            c.request_with(m, move |reply| {
                let _ = tx.send(reply);
            })
        });
        let msgno = sent.map_err(|e| errors::to_pyerr(py, &e))?;
        let rx = std::sync::Mutex::new(rx);
        let reply = loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(100),
            }
            .min(Duration::from_millis(100));
            let received = py.detach(|| match rx.lock() {
                Ok(rx) => rx.recv_timeout(slice),
                Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
            });
            match received {
                Ok(reply) => break reply,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(Error::ChannelClosed);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err(Error::Timeout);
            }
        };
        let number = self.chan.number();
        let frame = |kind, m| Frame::from_reply(number, msgno.0, kind, m);
        match reply.map_err(|e| errors::to_pyerr(py, &e))? {
            Reply::Rpy(m) => Ok(Bound::new(py, frame(MessageKind::Rpy, m))?.into_any()),
            Reply::Err(m) => Ok(Bound::new(py, frame(MessageKind::Err, m))?.into_any()),
            Reply::Answers(answers) => {
                let frames = answers
                    .into_iter()
                    .map(|(ansno, m)| Bound::new(py, frame(MessageKind::Ans { ansno }, m)))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(PyList::new(py, frames)?.into_any())
            }
        }
    }

    /// Sets the handler of the channel's messages (MSGs, and replies no
    /// call waits for): `handler(conn, channel, frame, data)`; None drops
    /// them (a MSG then gets an ERR).
    #[pyo3(signature = (handler=None, data=None))]
    fn set_frame_received(
        &self,
        py: Python<'_>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let handler = PyHandler::new(py, handler, data)?;
        let f = message_handler(handler, ConnRef::of(py, &self.conn));
        let chan = self.chan.clone();
        py.detach(move || chan.set_message_handler(f));
        Ok(())
    }

    /// Sets the handler that decides on the peer's requests to close this
    /// channel: `handler(channel_num, conn, data)` returns True to agree.
    #[pyo3(signature = (handler, data=None))]
    fn set_close_handler(
        &self,
        py: Python<'_>,
        handler: Py<PyAny>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        match PyHandler::new(py, Some(handler), data)? {
            Some(h) => install_close(py, &self.chan, h, ConnRef::of(py, &self.conn)),
            None => {
                let chan = self.chan.clone();
                py.detach(move || chan.set_close_handler(|_, _| true));
            }
        }
        Ok(())
    }

    /// The next frame of `queue` (a `vortex.AsyncQueue` fed by
    /// `vortex.queue_reply`), waiting for it.
    fn get_reply<'py>(&self, queue: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        queue.call_method0("pop")
    }

    /// Asks the peer to close the channel and waits for its answer (GIL
    /// released); True once closed, False if refused (see
    /// `pop_channel_error()`).
    fn close(&self, py: Python<'_>) -> bool {
        let closed = self.sending(py, |c| c.close());
        recorded(&self.conn, closed).is_some()
    }

    /// Sets how many octets the peer may send ahead (the receive window).
    fn set_window(&self, py: Python<'_>, size: u32) -> PyResult<()> {
        self.chan
            .set_window(size)
            .map_err(|e| errors::to_pyerr(py, &e))
    }

    /// Accepted for compatibility; Python counts references itself.
    fn incref(&self) -> bool {
        true
    }

    /// Accepted for compatibility; Python counts references itself.
    fn decref(&self) -> bool {
        true
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        if self.is_ready() {
            self.close(py);
        }
        false
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Channel>().is_ok_and(|o| {
            let o = o.get();
            o.chan.number() == self.chan.number() && o.chan.connection() == self.chan.connection()
        })
    }

    fn __hash__(&self) -> u64 {
        self.chan.connection().id().rotate_left(32) ^ u64::from(self.chan.number())
    }

    fn __repr__(&self) -> String {
        format!(
            "<vortex.Channel {} profile={:?}>",
            self.chan.number(),
            self.profile().unwrap_or_default()
        )
    }
}
