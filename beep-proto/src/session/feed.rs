//! The payload feeder (LibVortex's): one message sent in pieces as the
//! application produces them, its end not known when it starts.
//!
//! A fed message is an ordinary entry of its channel's send queue whose
//! payload is not complete yet: MSGs behind it wait, replies keep their
//! order (RFC 3080 2.6.1), and the framer sends what has been fed within
//! the peer's window (RFC 3081 3.1.4). The pieces fed after the entry
//! was queued wait here, beside it, until the framer takes them: the
//! queue's entries stay the small whole-message kind, and a session that
//! feeds nothing pays one emptiness check per frame.

use std::collections::VecDeque;

use bytes::Bytes;

use super::Session;
use crate::channel::{Awaiting, Channel, Outgoing};
use crate::error::UsageError;
use crate::frame::FrameType;
use crate::idmap::IdMap;
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};

/// A message being fed: what [`Session::open_msg`], [`Session::open_rpy`]
/// and [`Session::open_ans`] return, and what [`Session::feed`] takes.
///
/// It names one message of one session: once its last piece is given it
/// names nothing (feeding it again is [`UsageError::NoSuchFeed`]), and a
/// later message with the same numbers gets another.
///
/// ```
/// use beep_proto::{Message, frame::FrameType};
/// # let mut client = beep_proto::Session::initiator(Default::default());
/// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
/// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
/// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
/// # let channel = client.open_channel(vec![profile()], None).unwrap();
/// # pump(&mut client, &mut server);
/// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
/// # pump(&mut client, &mut server);
/// # while client.poll_event().is_some() {}
/// let feed = client.open_msg(channel, Message::new("first ")).unwrap();
/// assert_eq!((feed.channel(), feed.frame_type(), feed.ansno()), (channel, FrameType::Msg, None));
/// client.feed(feed, "and last", true).unwrap();
/// assert!(client.feed(feed, "more", false).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedId {
    channel: u32,
    frame_type: FrameType,
    msgno: MsgNo,
    ansno: AnsNo,
    /// Tells apart messages with the same numbers, one after the other.
    serial: u64,
}

impl FeedId {
    /// The channel the message goes on.
    ///
    /// ```
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// let feed = client.open_msg(channel, beep_proto::Message::new("")).unwrap();
    /// assert_eq!(feed.channel(), channel);
    /// ```
    pub fn channel(self) -> u32 {
        self.channel
    }

    /// Its msgno: of the MSG itself, or of the MSG a reply answers (the
    /// reply events of a fed MSG carry this one).
    ///
    /// ```
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// let msgno = client.send_msg(channel, beep_proto::Message::new("whole")).unwrap();
    /// let feed = client.open_msg(channel, beep_proto::Message::new("")).unwrap();
    /// assert_eq!(feed.msgno(), beep_proto::MsgNo(msgno.0 + 1));
    /// ```
    pub fn msgno(self) -> MsgNo {
        self.msgno
    }

    /// Its ansno, for an answer of a one-to-many reply.
    ///
    /// ```
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// let feed = client.open_msg(channel, beep_proto::Message::new("")).unwrap();
    /// assert_eq!(feed.ansno(), None);
    /// ```
    pub fn ansno(self) -> Option<AnsNo> {
        (self.frame_type == FrameType::Ans).then_some(self.ansno)
    }

    /// MSG, RPY or ANS.
    ///
    /// ```
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// let feed = client.open_msg(channel, beep_proto::Message::new("")).unwrap();
    /// assert_eq!(feed.frame_type(), beep_proto::frame::FrameType::Msg);
    /// ```
    pub fn frame_type(self) -> FrameType {
        self.frame_type
    }

    fn matches(&self, msg: &Outgoing) -> bool {
        self.frame_type == msg.frame_type && self.msgno == msg.msgno && self.ansno == msg.ansno
    }
}

/// Where a fed message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Taking pieces.
    Open,
    /// The last piece was given; some pieces are still to be framed.
    Finishing,
    /// The peer replied to this MSG first (RFC 3080 2.6.3): the MSG was
    /// ended, and the application is told at its next feed.
    Abandoned,
}

/// One fed message, beside its queue entry.
#[derive(Debug)]
pub(super) struct Feeding {
    id: FeedId,
    stage: Stage,
    /// Fed after the queue entry was made, not yet moved into it.
    pending: VecDeque<Bytes>,
    /// Octets in `pending`.
    pending_len: usize,
    /// The queue entry waits in a reply slot (RFC 3080 2.6.1): its pieces
    /// count as held output, not queued.
    held: bool,
    /// A frame of it has gone out.
    started: bool,
}

/// The messages being fed, by channel. Kept while a message takes pieces
/// or still has pieces to frame (and, abandoned, until the application
/// hears of it); a message fed to its end becomes an ordinary queue entry.
#[derive(Debug, Default)]
pub(super) struct Feeds {
    by_channel: IdMap<Vec<Feeding>>,
    next_serial: u64,
}

impl Feeds {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.by_channel.is_empty()
    }

    /// Registers a fed message, before its entry is queued or (`held`)
    /// held in a reply slot.
    pub(super) fn open(
        &mut self,
        channel: u32,
        frame_type: FrameType,
        msgno: MsgNo,
        ansno: AnsNo,
        held: bool,
    ) -> FeedId {
        let id = FeedId {
            channel,
            frame_type,
            msgno,
            ansno,
            serial: self.next_serial,
        };
        self.next_serial += 1;
        self.by_channel.entry(channel).or_default().push(Feeding {
            id,
            stage: Stage::Open,
            pending: VecDeque::new(),
            pending_len: 0,
            held,
            started: false,
        });
        id
    }

    fn get_mut(&mut self, id: FeedId) -> Option<&mut Feeding> {
        let list = self.by_channel.get_mut(&id.channel)?;
        list.iter_mut().find(|f| f.id == id)
    }

    pub(super) fn remove(&mut self, id: FeedId) -> Option<Feeding> {
        let list = self.by_channel.get_mut(&id.channel)?;
        let index = list.iter().position(|f| f.id == id)?;
        let feeding = list.swap_remove(index);
        if list.is_empty() {
            self.by_channel.remove(&id.channel);
        }
        Some(feeding)
    }

    /// True if `msg`, a queue entry of `channel`, is a fed message.
    pub(super) fn is_fed(&self, channel: u32, msg: &Outgoing) -> bool {
        self.of_ref(channel, msg).is_some()
    }

    /// The fed message that `msg`, a queue entry of `channel`, is, if any.
    pub(super) fn of(&mut self, channel: u32, msg: &Outgoing) -> Option<&mut Feeding> {
        let list = self.by_channel.get_mut(&channel)?;
        list.iter_mut()
            .find(|f| f.stage != Stage::Abandoned && f.id.matches(msg))
    }

    fn of_ref(&self, channel: u32, msg: &Outgoing) -> Option<&Feeding> {
        let list = self.by_channel.get(&channel)?;
        list.iter()
            .find(|f| f.stage != Stage::Abandoned && f.id.matches(msg))
    }

    /// What [`Channel::can_send`] says, knowing which entries are fed: a
    /// fed message with nothing fed left to frame sends nothing (no empty
    /// intermediate frame), and its pieces need window.
    #[inline]
    pub(super) fn can_send(&self, ch: &Channel) -> bool {
        if self.is_empty() {
            ch.can_send()
        } else {
            self.can_send_fed(ch)
        }
    }

    #[inline(never)]
    fn can_send_fed(&self, ch: &Channel) -> bool {
        let Some(msg) = ch.queue.front() else {
            return false;
        };
        match self.of_ref(ch.number, msg) {
            None => ch.can_send(),
            Some(_) if !ch.state.may_send() => false,
            Some(f) if f.is_abandoned(&ch.awaiting) => true,
            Some(f) if msg.remaining() + f.pending_len == 0 => false,
            Some(_) => ch.send.available() > 0,
        }
    }

    /// Sets the held-output flag of the entries in `moved` (queue entries
    /// of `channel` that left their reply slot); returns the octets of
    /// their pieces, which now count as queued.
    pub(super) fn released<'a>(
        &mut self,
        channel: u32,
        moved: impl Iterator<Item = &'a Outgoing>,
    ) -> usize {
        let mut octets = 0;
        for msg in moved {
            if let Some(f) = self.of(channel, msg)
                && f.held
            {
                f.held = false;
                octets += f.pending_len;
            }
        }
        octets
    }

    /// Channels whose fed MSG the peer has replied to while it waits for
    /// pieces: the framer must end it.
    fn abandoned<'a>(&'a self, channels: &'a IdMap<Channel>) -> impl Iterator<Item = u32> + 'a {
        self.by_channel.iter().filter_map(move |(&number, list)| {
            let ch = channels.get(&number)?;
            list.iter()
                .any(|f| f.stage != Stage::Abandoned && f.is_abandoned(&ch.awaiting))
                .then_some(number)
        })
    }
}

impl Feeding {
    /// True for a fed MSG that the peer has begun to answer (or answered)
    /// after its first frame: the rest is not wanted (RFC 3080 2.6.3).
    fn is_abandoned(&self, awaiting: &VecDeque<Awaiting>) -> bool {
        self.id.frame_type == FrameType::Msg
            && self.started
            && !awaiting
                .iter()
                .any(|a| a.msgno == self.id.msgno && a.reply.is_none())
    }

    /// Drops what is left of an abandoned MSG (`msg`, its queue entry):
    /// its last frame goes out empty. Returns the octets dropped.
    fn abandon(&mut self, msg: &mut Outgoing) -> usize {
        let dropped = msg.remaining() + self.pending_len;
        msg.offset = msg.len();
        self.pending = VecDeque::new();
        self.pending_len = 0;
        self.stage = Stage::Abandoned;
        dropped
    }
}

/// What the framer does with a fed front entry.
pub(super) enum Front {
    /// Frame `size` octets of it; `more` frames follow.
    Fed { size: usize, more: bool },
    /// The peer answered this MSG (RFC 3080 2.6.3): it was cut short and
    /// is an ordinary entry with nothing left, for an empty last frame.
    Ended,
    /// Nothing to frame now (all that was fed is out, or no window).
    Wait,
}

/// Decides the next frame of a fed front entry `msg`: at most `limit`
/// octets (the frame size and the window). A MSG the peer has answered
/// (`awaiting` says) is ended instead, `dropped` getting the octets
/// thrown away.
pub(super) fn next_frame(
    f: &mut Feeding,
    awaiting: &VecDeque<Awaiting>,
    msg: &mut Outgoing,
    limit: usize,
    dropped: &mut usize,
) -> Front {
    if f.is_abandoned(awaiting) {
        *dropped += f.abandon(msg);
        return Front::Ended;
    }
    let fed = msg.remaining() + f.pending_len;
    let open = f.stage == Stage::Open;
    let size = fed.min(limit);
    if (fed == 0 && open) || (fed > 0 && size == 0) {
        return Front::Wait;
    }
    f.started = true;
    Front::Fed {
        size,
        more: size < fed || open,
    }
}

/// Hands `n` octets of a fed entry to `take`: from the entry, then from
/// the pieces fed after it, moved into it one by one (slices of the
/// application's buffers, never joined). Returns the feed once it is
/// done (finished and all framed): forget it with its entry.
pub(super) fn take_fed(
    f: &mut Feeding,
    msg: &mut Outgoing,
    mut n: usize,
    mut take: impl FnMut(&mut Outgoing, usize),
) -> Option<FeedId> {
    loop {
        let k = n.min(msg.remaining());
        if k > 0 {
            take(msg, k);
            n -= k;
        }
        if n == 0 {
            break;
        }
        let Some(piece) = f.pending.pop_front() else {
            break;
        };
        f.pending_len -= piece.len();
        msg.parts = [piece, Bytes::new()];
        msg.offset = 0;
    }
    let done = f.stage == Stage::Finishing && f.pending_len == 0 && msg.remaining() == 0;
    done.then_some(f.id)
}

/// True if an entry queued or held on `ch` has these numbers.
pub(super) fn entry_exists(
    ch: &Channel,
    frame_type: FrameType,
    msgno: MsgNo,
    ansno: AnsNo,
) -> bool {
    let held = ch.slots.iter().flat_map(|s| &s.held);
    ch.queue
        .iter()
        .chain(held)
        .any(|m| (m.frame_type, m.msgno, m.ansno) == (frame_type, msgno, ansno))
}

impl Session {
    /// Opens a MSG whose payload the application will give in pieces with
    /// [`Session::feed`] (LibVortex's payload feeder): for an upload
    /// larger than memory should hold, or produced bit by bit. `start`
    /// is its beginning: its header block (none for
    /// [`Message::verbatim`]) and the body so far, often empty.
    ///
    /// What has been fed goes out as frames with the continuation
    /// indicator `*`, within the peer's window and
    /// [`Config::max_frame_size`](crate::Config::max_frame_size), as for
    /// whole messages (RFC 3080 2.2.1, RFC 3081 3.1.4); the last piece ends
    /// it with `.`. MSGs on one channel do not interleave: later MSGs on
    /// the channel wait until this one is finished. The reply events
    /// carry [`FeedId::msgno`].
    ///
    /// # Errors
    ///
    /// As [`Session::send_msg`].
    ///
    /// ```
    /// use beep_proto::{Event, Message};
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// let feed = client.open_msg(channel, Message::new("one ")).unwrap();
    /// client.feed(feed, "two ", false).unwrap();
    /// client.feed(feed, bytes::Bytes::from_static(b"three"), true).unwrap();
    /// pump(&mut client, &mut server);
    /// let Some(Event::Message(m)) = server.poll_event() else { panic!() };
    /// assert_eq!((m.msgno, &m.message.body()[..]), (feed.msgno(), &b"one two three"[..]));
    /// ```
    pub fn open_msg(&mut self, channel: u32, start: Message) -> Result<FeedId, UsageError> {
        let msgno = self.send_msg(channel, start)?;
        // Before any framing: the entry is known as fed from the start.
        Ok(self
            .feeds
            .open(channel, FrameType::Msg, msgno, AnsNo(0), false))
    }

    /// Opens a positive reply to MSG `msgno` whose payload the
    /// application will give in pieces with [`Session::feed`]: a server
    /// streaming a large answer. Like [`Session::send_rpy`], it goes out
    /// in MSG order (RFC 3080 2.6.1): replies to later MSGs wait until
    /// this one is finished.
    ///
    /// There is no `open_err`: a negative reply is a diagnostic, known
    /// whole when the request fails, and once a reply has begun as RPY it
    /// cannot turn into an ERR; send it with [`Session::send_err`].
    ///
    /// # Errors
    ///
    /// As [`Session::send_rpy`]; [`UsageError::ReplyMismatch`] also when
    /// this MSG's reply is already being fed.
    ///
    /// ```
    /// use beep_proto::{Event, Message};
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// client.send_msg(channel, Message::new("get")).unwrap();
    /// pump(&mut client, &mut server);
    /// let Some(Event::Message(request)) = server.poll_event() else { panic!() };
    /// let feed = server.open_rpy(channel, request.msgno, Message::new("")).unwrap();
    /// for piece in ["a", "b", "c"] {
    ///     server.feed(feed, piece, false).unwrap();
    /// }
    /// server.feed(feed, "", true).unwrap();
    /// pump(&mut client, &mut server);
    /// let Some(Event::Message(reply)) = client.poll_event() else { panic!() };
    /// assert_eq!(&reply.message.body()[..], b"abc");
    /// ```
    pub fn open_rpy(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        start: Message,
    ) -> Result<FeedId, UsageError> {
        self.open_reply(channel, msgno, FrameType::Rpy, start)
    }

    /// Opens one answer of a one-to-many reply to MSG `msgno` (RFC 3080
    /// 2.6.2) whose payload the application will give in pieces with
    /// [`Session::feed`]; [`FeedId::ansno`] is its ansno. Answers sent
    /// after it on the channel (whole or fed) go out after it, and so does
    /// the [`Session::send_nul`] that ends the reply.
    ///
    /// # Errors
    ///
    /// As [`Session::send_ans`].
    ///
    /// ```
    /// use beep_proto::{Event, Message, MessageKind};
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// client.send_msg(channel, Message::new("watch")).unwrap();
    /// pump(&mut client, &mut server);
    /// let Some(Event::Message(request)) = server.poll_event() else { panic!() };
    /// let feed = server.open_ans(channel, request.msgno, Message::new("tick ")).unwrap();
    /// server.feed(feed, "tock", true).unwrap();
    /// server.send_nul(channel, request.msgno).unwrap();
    /// pump(&mut client, &mut server);
    /// let Some(Event::Message(answer)) = client.poll_event() else { panic!() };
    /// assert_eq!(answer.kind, MessageKind::Ans { ansno: feed.ansno().unwrap() });
    /// assert_eq!(&answer.message.body()[..], b"tick tock");
    /// ```
    pub fn open_ans(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        start: Message,
    ) -> Result<FeedId, UsageError> {
        self.open_reply(channel, msgno, FrameType::Ans, start)
    }

    /// Gives the next piece of a fed message; with `last`, its end (the
    /// piece may then be empty: the last frame says `.` with no octets,
    /// which is legal). The piece is framed without copying, as whole
    /// payloads are ([`Session::poll_transmit_vectored`]); an empty piece
    /// before the last does nothing.
    ///
    /// A piece counts in [`Session::queued_output`] until it is framed,
    /// and is refused, like a whole message, while queued output is above
    /// [`Config::max_queued_output`](crate::Config::max_queued_output)
    /// ([`Event::Writable`](crate::Event::Writable) follows the drain).
    /// An empty last piece is never refused for room, so a fed message
    /// can always end.
    ///
    /// # Errors
    ///
    /// The piece is dropped; nothing else changes, but that an abandoned
    /// MSG is ended.
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::UnknownChannel`]: the channel is not open (it
    ///   closed with the message unfinished: what was fed is dropped).
    /// * [`UsageError::NoSuchFeed`]: the message was finished, or `feed`
    ///   is not this session's.
    /// * [`UsageError::FeedAbandoned`]: the peer replied to this MSG
    ///   before it was complete (RFC 3080 2.6.3); the MSG was ended and
    ///   the piece dropped.
    /// * [`UsageError::OutputFull`]: queued output is above the limit.
    ///
    /// ```
    /// use beep_proto::{Message, UsageError};
    /// # let mut client = beep_proto::Session::initiator(Default::default());
    /// # let mut server = beep_proto::Session::listener(beep_proto::Config { profiles: vec!["http://example.org/p".into()], ..Default::default() });
    /// # fn pump(a: &mut beep_proto::Session, b: &mut beep_proto::Session) { loop { if let Some(x) = a.poll_transmit() { b.handle_input(&x).unwrap() } else if let Some(x) = b.poll_transmit() { a.handle_input(&x).unwrap() } else { break } } }
    /// # let profile = || beep_proto::xml::Profile::new("http://example.org/p");
    /// # let channel = client.open_channel(vec![profile()], None).unwrap();
    /// # pump(&mut client, &mut server);
    /// # while let Some(e) = server.poll_event() { if let beep_proto::Event::StartRequested(r) = e { server.accept_start(r.channel, profile()).unwrap() } }
    /// # pump(&mut client, &mut server);
    /// # while client.poll_event().is_some() {}
    /// let feed = client.open_msg(channel, Message::new("")).unwrap();
    /// client.feed(feed, vec![1u8, 2, 3], false).unwrap();
    /// client.feed(feed, "", true).unwrap();
    /// let gone = UsageError::NoSuchFeed { channel, msgno: feed.msgno() };
    /// assert_eq!(client.feed(feed, "late", false), Err(gone));
    /// ```
    pub fn feed(
        &mut self,
        feed: FeedId,
        piece: impl Into<Bytes>,
        last: bool,
    ) -> Result<(), UsageError> {
        let piece = piece.into();
        self.ensure_active()?;
        let FeedId { channel, msgno, .. } = feed;
        let no_such = UsageError::NoSuchFeed { channel, msgno };
        let ch = self
            .channels
            .get_mut(&channel)
            .filter(|c| c.state.is_open())
            .ok_or(UsageError::UnknownChannel { channel })?;
        let f = self.feeds.get_mut(feed).ok_or(no_such.clone())?;
        match f.stage {
            Stage::Open => {}
            Stage::Finishing => return Err(no_such),
            Stage::Abandoned => {
                self.feeds.remove(feed);
                return Err(UsageError::FeedAbandoned { channel, msgno });
            }
        }
        if f.is_abandoned(&ch.awaiting) {
            // Its entry is at the front: it has begun to go out.
            if let Some(msg) = ch.queue.front_mut().filter(|m| feed.matches(m)) {
                self.queued = self.queued.saturating_sub(f.abandon(msg));
            }
            self.feeds.remove(feed);
            self.schedule(channel);
            self.note_room();
            return Err(UsageError::FeedAbandoned { channel, msgno });
        }
        let (queued, limit) = (self.queued_output(), self.config.max_queued_output);
        if !piece.is_empty() && queued > limit {
            self.output_blocked = true;
            return Err(UsageError::OutputFull { queued, limit });
        }
        let Some(f) = self.feeds.get_mut(feed) else {
            return Err(no_such);
        };
        if !piece.is_empty() {
            if f.held {
                self.held += piece.len();
            } else {
                self.queued += piece.len();
            }
            f.pending_len += piece.len();
            f.pending.push_back(piece);
        }
        if last {
            f.stage = Stage::Finishing;
            if f.pending_len == 0 {
                // All in the entry: an ordinary message from now on.
                self.feeds.remove(feed);
            }
            if feed.frame_type == FrameType::Rpy {
                self.complete_fed_reply(channel, msgno);
            }
        }
        self.schedule(channel);
        Ok(())
    }

    fn open_reply(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        frame_type: FrameType,
        start: Message,
    ) -> Result<FeedId, UsageError> {
        self.ensure_active()?;
        super::check_size(&start)?;
        if channel == 0 {
            return Err(UsageError::UnknownChannel { channel });
        }
        if self.is_sasl_channel(channel) {
            return Err(UsageError::SaslChannel { channel });
        }
        self.open_channel_mut(channel)?;
        let (_, feed) = self.queue_reply_fed(channel, msgno, frame_type, start, None, true)?;
        Ok(feed.expect("a fed reply has a FeedId"))
    }

    /// The last piece of a fed RPY was given: its reply slot is complete,
    /// and the replies held behind it may go (RFC 3080 2.6.1).
    fn complete_fed_reply(&mut self, channel: u32, msgno: MsgNo) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        let Some(index) = ch.slots.iter().position(|s| s.msgno == msgno) else {
            return;
        };
        ch.slots[index].complete = true;
        if index == 0 {
            self.release_slots(channel);
        }
    }

    /// Forgets the fed messages of channels that are gone (closed with a
    /// message unfinished), and what was fed to them.
    pub(super) fn forget_closed_feeds(&mut self) {
        let channels = &self.channels;
        let gone: Vec<u32> = self
            .feeds
            .by_channel
            .keys()
            .copied()
            .filter(|n| !channels.contains_key(n))
            .collect();
        for number in gone {
            for f in self.feeds.by_channel.remove(&number).unwrap_or_default() {
                if f.held {
                    self.held = self.held.saturating_sub(f.pending_len);
                } else {
                    self.queued = self.queued.saturating_sub(f.pending_len);
                }
            }
        }
    }

    /// The session ended: no fed message can be finished any more. What
    /// was fed and not framed is dropped (the part already in a queue
    /// entry stays, and never goes out as a complete message).
    pub(super) fn drop_fed_pieces(&mut self) {
        for f in self.feeds.by_channel.values_mut().flatten() {
            if f.held {
                self.held = self.held.saturating_sub(f.pending_len);
            } else {
                self.queued = self.queued.saturating_sub(f.pending_len);
            }
            f.pending = VecDeque::new();
            f.pending_len = 0;
            if f.stage == Stage::Finishing {
                // Its end would go out without its pieces: keep it open.
                f.stage = Stage::Open;
            }
        }
    }

    /// Puts the channels of fed MSGs the peer has answered in the ready
    /// list, for the framer to end them.
    pub(super) fn schedule_abandoned_feeds(&mut self) {
        let numbers: Vec<u32> = self.feeds.abandoned(&self.channels).collect();
        for number in numbers {
            self.schedule(number);
        }
    }

    /// True if a fed MSG the peer has answered waits to be ended.
    pub(super) fn abandoned_feed_waits(&self) -> bool {
        self.feeds.abandoned(&self.channels).next().is_some()
    }
}
