//! `vortex.Frame` (a received message, as PyVortex's frame-received
//! handler sees it) and payloads from Python (`bytes` or `str`, with
//! PyVortex's optional size).

use std::sync::atomic::{AtomicU64, Ordering};

use beep_proto::{IncomingMessage, Message, MessageKind};
use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::errors;

/// Frame ids, as PyVortex numbers its frames.
static NEXT_FRAME_ID: AtomicU64 = AtomicU64::new(1);

/// A received message (PyVortex `vortex.Frame`): with the drivers' joining
/// of frames, a frame is always a whole message (`more_flag` is 0).
///
/// `payload` is the body after the MIME header block, as text (UTF-8;
/// bytes that are not UTF-8 come back as lone surrogates, and a `str`
/// payload is sent back byte for byte); `payload_bytes` is the same body
/// as `bytes`. `content` is the whole entity, MIME header block included.
#[pyclass(frozen, name = "Frame", module = "vortex")]
pub struct Frame {
    id: u64,
    kind: MessageKind,
    pub(crate) msgno: u32,
    channel: u32,
    headers: Bytes,
    body: Bytes,
    content_type: String,
}

impl Frame {
    /// The frame for a message received on a channel.
    pub(crate) fn from_message(m: IncomingMessage) -> Self {
        let content_type = m.message.content_type().into_owned();
        let headers = m.message.raw_headers().clone();
        Frame {
            id: NEXT_FRAME_ID.fetch_add(1, Ordering::Relaxed),
            kind: m.kind,
            msgno: m.msgno.0,
            channel: m.channel,
            headers,
            body: m.message.into_body(),
            content_type,
        }
    }

    /// The frame of a reply waited for with `Channel.request`.
    pub(crate) fn from_reply(channel: u32, msgno: u32, kind: MessageKind, m: Message) -> Self {
        Frame::from_message(IncomingMessage {
            channel,
            msgno: beep_proto::MsgNo(msgno),
            kind,
            message: m,
            credit: 0,
        })
    }

    /// The whole entity: the header block (an empty one, `\r\n`, when
    /// there was none) and the body.
    fn entity(&self) -> Vec<u8> {
        let mut entity = Vec::with_capacity(self.headers.len().max(2) + self.body.len());
        if self.headers.is_empty() {
            entity.extend_from_slice(b"\r\n");
        } else {
            entity.extend_from_slice(&self.headers);
        }
        entity.extend_from_slice(&self.body);
        entity
    }
}

/// Text for payload bytes: UTF-8, with `surrogateescape` for the bytes that
/// are not, so that the text encodes back to the same bytes.
pub(crate) fn text<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(PyString::new(py, s).into_any()),
        Err(_) => PyBytes::new(py, bytes).call_method1("decode", ("utf-8", "surrogateescape")),
    }
}

/// The frame type's name, as PyVortex spells it.
fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Msg => "MSG",
        MessageKind::Rpy => "RPY",
        MessageKind::Err => "ERR",
        MessageKind::Ans { .. } => "ANS",
        MessageKind::Nul => "NUL",
    }
}

#[pymethods]
impl Frame {
    /// A number that tells frames apart.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// `"MSG"`, `"RPY"`, `"ERR"`, `"ANS"` or `"NUL"`.
    #[getter(r#type)]
    fn frame_type(&self) -> &'static str {
        kind_name(self.kind)
    }

    /// The message number (of the MSG a reply answers).
    #[getter]
    fn msg_no(&self) -> u32 {
        self.msgno
    }

    /// The answer number of an ANS (0 for other frames).
    #[getter]
    fn ans_no(&self) -> u32 {
        match self.kind {
            MessageKind::Ans { ansno } => ansno.0,
            _ => 0,
        }
    }

    /// Always 0: sequence numbers stay inside the driver.
    #[getter]
    fn seq_no(&self) -> u32 {
        0
    }

    /// Always 0: frames are joined into whole messages.
    #[getter]
    fn more_flag(&self) -> u32 {
        0
    }

    /// The channel the frame came on.
    #[getter]
    fn channel_num(&self) -> u32 {
        self.channel
    }

    /// The body, after the MIME header block, as `str`.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        text(py, &self.body)
    }

    /// The body as `bytes`.
    #[getter]
    fn payload_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }

    /// The size of the body in octets.
    #[getter]
    fn payload_size(&self) -> usize {
        self.body.len()
    }

    /// The whole entity (MIME header block and body) as `str`.
    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        text(py, &self.entity())
    }

    /// The whole entity as `bytes`.
    #[getter]
    fn content_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.entity())
    }

    /// The size of the whole entity in octets.
    #[getter]
    fn content_size(&self) -> usize {
        self.headers.len().max(2) + self.body.len()
    }

    /// The MIME Content-Type (`application/octet-stream` by default).
    #[getter]
    fn content_type(&self) -> &str {
        &self.content_type
    }

    fn __len__(&self) -> usize {
        self.body.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<vortex.Frame {} channel={} msg_no={} size={}>",
            kind_name(self.kind),
            self.channel,
            self.msgno,
            self.body.len()
        )
    }
}

/// A payload from Python: `bytes` (or anything `bytes()` takes), a
/// `Frame` (its body) or `str` (UTF-8, `surrogateescape`), and PyVortex's
/// size: `None` or -1 for all of it, the length of a `str` in characters
/// for all of it too, else that many octets from the start.
pub(crate) fn payload(
    py: Python<'_>,
    content: &Bound<'_, PyAny>,
    size: Option<i64>,
) -> PyResult<Message> {
    let mut chars = None;
    let bytes: Vec<u8> = if let Ok(b) = content.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if let Ok(s) = content.cast::<PyString>() {
        chars = Some(s.len()?);
        match s.to_cow() {
            Ok(s) => s.as_bytes().to_vec(),
            Err(_) => s
                .call_method1("encode", ("utf-8", "surrogateescape"))?
                .cast::<PyBytes>()?
                .as_bytes()
                .to_vec(),
        }
    } else if let Ok(frame) = content.cast::<Frame>() {
        frame.get().body.to_vec()
    } else if content.is_none() {
        Vec::new()
    } else {
        let converted = py
            .get_type::<PyBytes>()
            .call1((content,))
            .map_err(|_| errors::usage(py, "a payload is bytes, str or a Frame"))?;
        converted.cast::<PyBytes>()?.as_bytes().to_vec()
    };
    let mut bytes = bytes;
    match size {
        None | Some(-1) => {}
        Some(n) if n < 0 => return Err(errors::usage(py, "a payload size cannot be negative")),
        Some(n) if chars == Some(n as usize) => {}
        Some(n) => {
            let n = n as usize;
            if n > bytes.len() {
                return Err(errors::usage(
                    py,
                    format!(
                        "size {n} is larger than the payload ({} octets)",
                        bytes.len()
                    ),
                ));
            }
            bytes.truncate(n);
        }
    }
    Ok(Message::new(bytes))
}
