//! Property tests over whole conversations: two sessions wired back to back
//! through a wire that splits the byte stream at random points, running a
//! random workload (many channels, random sizes and windows, pipelining,
//! ANS/NUL, out-of-order replies, closes). Every message must arrive
//! exactly once, intact and in order; replies in MSG order (RFC 3080
//! 2.6.1); and no window is ever exceeded (the receiving session enforces
//! it: an excess would be a protocol error and fail the test).

use std::collections::{HashMap, VecDeque};

use beep_proto::xml::Profile;
use beep_proto::{Config, Event, Message, MessageKind, MsgNo, ReplyCode, Session};
use proptest::prelude::*;

const PROFILE: &str = "http://example.org/beep/test";

#[derive(Debug, Clone)]
enum Op {
    Open,
    /// `a` sends a MSG of `size` octets on the `ch`-th open channel.
    Send {
        ch: usize,
        size: usize,
    },
    /// `b` answers the `pick`-th unanswered MSG: 0 RPY, 1 ERR, else that
    /// many ANS (minus 2) and a NUL.
    Reply {
        pick: usize,
        kind: u8,
    },
    /// `b` sends a MSG to `a`, which echoes it.
    SendBack {
        ch: usize,
        size: usize,
    },
    Close {
        ch: usize,
    },
    /// Deliver up to this many bytes each way.
    Deliver {
        a_to_b: usize,
        b_to_a: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Open),
        6 => (any::<usize>(), 0usize..20_000).prop_map(|(ch, size)| Op::Send { ch, size }),
        5 => (any::<usize>(), 0u8..6).prop_map(|(pick, kind)| Op::Reply { pick, kind }),
        2 => (any::<usize>(), 0usize..9000).prop_map(|(ch, size)| Op::SendBack { ch, size }),
        1 => any::<usize>().prop_map(|ch| Op::Close { ch }),
        4 => (1usize..30_000, 1usize..30_000).prop_map(|(a_to_b, b_to_a)| Op::Deliver { a_to_b, b_to_a }),
    ]
}

/// Bytes in flight one way, delivered in arbitrary pieces.
#[derive(Default)]
struct Wire {
    pending: VecDeque<u8>,
    max_frame_seen: usize,
}

/// A payload whose content says where it came from.
fn body(tag: &str, channel: u32, n: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{tag}:{channel}:{n}:").into_bytes();
    v.resize(size.max(v.len()), b'a' + (n % 26) as u8);
    v
}

/// A reply `b` produced: its kind and body.
type Reply = (MessageKind, Vec<u8>);

struct World {
    a: Session,
    b: Session,
    to_b: Wire,
    to_a: Wire,
    /// Open channels (both ends agree) not being closed.
    channels: Vec<u32>,
    /// MSG bodies a sent, per channel, not yet seen by b.
    a_sent: HashMap<u32, VecDeque<(MsgNo, Vec<u8>)>>,
    /// a's MSGs awaiting replies, per channel, in send order.
    a_outstanding: HashMap<u32, VecDeque<MsgNo>>,
    /// MSGs b received and has not answered: (channel, msgno).
    b_unanswered: Vec<(u32, MsgNo)>,
    /// What b answered, per (channel, msgno), in order, to be seen by a.
    b_replies: HashMap<(u32, MsgNo), VecDeque<Reply>>,
    /// MSGs b sent to a, per channel: body, and whether the echo came back.
    b_sent: HashMap<u32, VecDeque<(MsgNo, Vec<u8>)>>,
    counter: usize,
    /// Channels a asked to close, and those a saw closed.
    closing: Vec<u32>,
    closed: Vec<u32>,
}

impl World {
    fn new(window: u32, frame: u32) -> Self {
        let config = Config {
            receive_window: window,
            max_frame_size: frame,
            transmit_batch: 8192,
            ..Config::default()
        };
        let b_config = Config {
            profiles: vec![PROFILE.into()],
            ..config.clone()
        };
        World {
            a: Session::initiator(config),
            b: Session::listener(b_config),
            to_b: Wire::default(),
            to_a: Wire::default(),
            channels: Vec::new(),
            a_sent: HashMap::new(),
            a_outstanding: HashMap::new(),
            b_unanswered: Vec::new(),
            b_replies: HashMap::new(),
            b_sent: HashMap::new(),
            counter: 0,
            closing: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Returns how many bytes moved.
    fn deliver(&mut self, a_to_b: usize, b_to_a: usize) -> usize {
        while let Some(bytes) = self.a.poll_transmit() {
            self.to_b.pending.extend(&bytes[..]);
        }
        // b writes without copying payloads: its chunks must make the same
        // stream a copying writer would.
        let mut chunks = Vec::new();
        while self.b.poll_transmit_vectored(&mut chunks) {
            for chunk in chunks.drain(..) {
                self.to_a.pending.extend(&chunk[..]);
            }
        }
        let n = a_to_b.min(self.to_b.pending.len());
        let chunk: Vec<u8> = self.to_b.pending.drain(..n).collect();
        self.to_b.max_frame_seen = self.to_b.max_frame_seen.max(chunk.len());
        self.b.handle_input(&chunk).expect("b rejected a's bytes");
        let n = chunk.len();
        let taken = b_to_a.min(self.to_a.pending.len());
        let chunk: Vec<u8> = self.to_a.pending.drain(..taken).collect();
        self.a.handle_input(&chunk).expect("a rejected b's bytes");
        self.events();
        n + chunk.len()
    }

    fn events(&mut self) {
        while let Some(e) = self.b.poll_event() {
            match e {
                Event::StartRequested(r) => self
                    .b
                    .accept_start(r.channel, Profile::new(PROFILE))
                    .unwrap(),
                Event::Message(m) if m.kind == MessageKind::Msg => {
                    let expected = self
                        .a_sent
                        .get_mut(&m.channel)
                        .and_then(VecDeque::pop_front);
                    let (msgno, body) = expected.expect("MSG nobody sent");
                    assert_eq!(m.msgno, msgno, "MSGs in order, exactly once");
                    assert_eq!(&m.message.body()[..], &body[..], "MSG intact");
                    self.b_unanswered.push((m.channel, m.msgno));
                }
                Event::Message(m) => {
                    // Echo of one of b's MSGs.
                    let sent = self
                        .b_sent
                        .get_mut(&m.channel)
                        .and_then(VecDeque::pop_front);
                    let (msgno, body) = sent.expect("reply to nothing");
                    assert_eq!((m.msgno, &m.message.body()[..]), (msgno, &body[..]));
                }
                Event::CloseRequested { channel, .. } => self.b.accept_close(channel).unwrap(),
                Event::ChannelClosed { .. } | Event::Greeting(_) => {}
                other => panic!("b: unexpected {other:?}"),
            }
        }
        while let Some(e) = self.a.poll_event() {
            match e {
                Event::ChannelOpened { channel, .. } => self.channels.push(channel),
                Event::Message(m) if m.kind == MessageKind::Msg => {
                    self.a.send_rpy(m.channel, m.msgno, m.message).unwrap();
                }
                Event::Message(m) => {
                    let outstanding = self.a_outstanding.get_mut(&m.channel).unwrap();
                    assert_eq!(outstanding.front(), Some(&m.msgno), "replies in MSG order");
                    let replies = self.b_replies.get_mut(&(m.channel, m.msgno)).unwrap();
                    let (kind, body) = replies.pop_front().expect("more replies than sent");
                    assert_eq!(m.kind, kind);
                    assert_eq!(&m.message.body()[..], &body[..]);
                    if matches!(kind, MessageKind::Rpy | MessageKind::Err | MessageKind::Nul) {
                        outstanding.pop_front();
                        assert!(replies.is_empty());
                    }
                }
                Event::ChannelClosed { channel } => self.closed.push(channel),
                Event::Greeting(_) => {}
                other => panic!("a: unexpected {other:?}"),
            }
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Open => {
                self.a
                    .open_channel(vec![Profile::new(PROFILE)], None)
                    .unwrap();
            }
            Op::Send { ch, size } if !self.channels.is_empty() => {
                let channel = self.channels[ch % self.channels.len()];
                self.counter += 1;
                let data = body("msg", channel, self.counter, size);
                let msgno = self
                    .a
                    .send_msg(channel, Message::new(data.clone()))
                    .unwrap();
                self.a_sent
                    .entry(channel)
                    .or_default()
                    .push_back((msgno, data));
                self.a_outstanding
                    .entry(channel)
                    .or_default()
                    .push_back(msgno);
            }
            Op::SendBack { ch, size } if !self.channels.is_empty() => {
                let channel = self.channels[ch % self.channels.len()];
                self.counter += 1;
                let data = body("back", channel, self.counter, size);
                let msgno = self
                    .b
                    .send_msg(channel, Message::new(data.clone()))
                    .unwrap();
                self.b_sent
                    .entry(channel)
                    .or_default()
                    .push_back((msgno, data));
            }
            Op::Reply { pick, kind } if !self.b_unanswered.is_empty() => {
                let (channel, msgno) = self.b_unanswered.remove(pick % self.b_unanswered.len());
                self.answer(channel, msgno, kind);
            }
            Op::Close { ch } if !self.channels.is_empty() => {
                let channel = self.channels.remove(ch % self.channels.len());
                self.a
                    .close_channel(channel, ReplyCode::SUCCESS, "")
                    .unwrap();
                self.closing.push(channel);
            }
            Op::Deliver { a_to_b, b_to_a } => {
                self.deliver(a_to_b, b_to_a);
            }
            _ => {}
        }
    }

    fn answer(&mut self, channel: u32, msgno: MsgNo, kind: u8) {
        let replies = self.b_replies.entry((channel, msgno)).or_default();
        let text = body("re", channel, msgno.0 as usize, 40 + kind as usize * 1000);
        match kind {
            0 => {
                self.b
                    .send_rpy(channel, msgno, Message::new(text.clone()))
                    .unwrap();
                replies.push_back((MessageKind::Rpy, text));
            }
            1 => {
                self.b
                    .send_err(channel, msgno, Message::new(text.clone()))
                    .unwrap();
                replies.push_back((MessageKind::Err, text));
            }
            n => {
                for i in 0..(n - 2) {
                    let mut part = text.clone();
                    part.push(b'0' + i);
                    let ansno = self
                        .b
                        .send_ans(channel, msgno, Message::new(part.clone()))
                        .unwrap();
                    replies.push_back((MessageKind::Ans { ansno }, part));
                }
                self.b.send_nul(channel, msgno).unwrap();
                replies.push_back((MessageKind::Nul, Vec::new()));
            }
        }
    }

    /// Answers everything and delivers everything.
    fn finish(&mut self) {
        for _ in 0..10_000 {
            while let Some((channel, msgno)) = self.b_unanswered.pop() {
                self.answer(channel, msgno, 0);
            }
            let moved = self.deliver(usize::MAX, usize::MAX);
            if moved == 0 && self.b_unanswered.is_empty() {
                return;
            }
        }
        panic!("conversation did not settle");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_workloads_deliver_everything_once_in_order(
        window in prop_oneof![Just(4096u32), 4096u32..300_000],
        frame in prop_oneof![Just(4096u32), 1u32..70_000],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut world = World::new(window, frame);
        for op in ops {
            world.apply(op);
        }
        world.finish();
        for (channel, sent) in &world.a_sent {
            prop_assert!(sent.is_empty(), "channel {} lost MSGs", channel);
        }
        for (channel, outstanding) in &world.a_outstanding {
            prop_assert!(outstanding.is_empty(), "channel {} lost replies", channel);
        }
        for (channel, sent) in &world.b_sent {
            prop_assert!(sent.is_empty(), "channel {} lost echoes", channel);
        }
        // Every channel a asked to close is closed, once, on both ends.
        let mut closed = world.closed.clone();
        closed.sort_unstable();
        let mut asked = world.closing.clone();
        asked.sort_unstable();
        prop_assert_eq!(closed, asked);
        for channel in &world.closing {
            prop_assert!(!world.a.is_channel_open(*channel) && !world.b.is_channel_open(*channel));
        }
    }

    #[test]
    fn any_split_of_a_stream_gives_the_same_events(
        cuts in proptest::collection::vec(1usize..400, 1..60),
        sizes in proptest::collection::vec(0usize..9000, 1..12),
    ) {
        let (setup, messages) = recorded_stream(&sizes);
        let whole = replay(&setup, &messages, &[usize::MAX]);
        prop_assert_eq!(whole.len(), 2 + sizes.len());
        prop_assert_eq!(replay(&setup, &messages, &cuts), whole.clone());
        prop_assert_eq!(replay(&setup, &messages, &[1]), whole);
    }
}

/// What an initiator sends to a listener: the greeting and start request,
/// then (once the channel is open) MSGs of the given sizes.
fn recorded_stream(sizes: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut a = Session::initiator(Config::default());
    let mut b = listener();
    let channel = a.open_channel(vec![Profile::new(PROFILE)], None).unwrap();
    let mut setup = Vec::new();
    let mut messages = Vec::new();
    let mut opened = false;
    for _ in 0..1000 {
        let mut moved = false;
        while let Some(bytes) = a.poll_transmit() {
            if opened {
                messages.extend_from_slice(&bytes)
            } else {
                setup.extend_from_slice(&bytes)
            }
            b.handle_input(&bytes).unwrap();
            moved = true;
        }
        while let Some(e) = b.poll_event() {
            if let Event::StartRequested(r) = &e {
                b.accept_start(r.channel, Profile::new(PROFILE)).unwrap();
            }
        }
        while let Some(bytes) = b.poll_transmit() {
            a.handle_input(&bytes).unwrap();
            moved = true;
        }
        while let Some(e) = a.poll_event() {
            if matches!(e, Event::ChannelOpened { .. }) {
                opened = true;
                for (i, &size) in sizes.iter().enumerate() {
                    a.send_msg(channel, Message::new(body("s", channel, i, size)))
                        .unwrap();
                }
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    (setup, messages)
}

/// A window larger than the whole recording: a replay in one piece gives
/// no chance to return credit, which the recorded run had between reads.
fn listener() -> Session {
    Session::listener(Config {
        profiles: vec![PROFILE.into()],
        receive_window: 1 << 20,
        ..Config::default()
    })
}

/// Feeds `setup` then `messages` to a fresh listener, cut into pieces of
/// the sizes in `cuts` (cycled), and returns the events. The start is
/// accepted between the two parts, as it was when they were recorded.
fn replay(setup: &[u8], messages: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut s = listener();
    let mut events = Vec::new();
    let mut i = 0;
    for part in [setup, messages] {
        let mut rest = part;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            s.handle_input(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
            while let Some(e) = s.poll_event() {
                if let Event::StartRequested(r) = &e {
                    s.accept_start(r.channel, Profile::new(PROFILE)).unwrap();
                }
                events.push(without_credit(e));
            }
            while s.poll_transmit().is_some() {}
        }
    }
    events
}

/// Credit depends on when the application polled (the credit of an
/// unfinished message is held back while a finished one is unconsumed),
/// not on how the input was split: compare events without it.
fn without_credit(e: Event) -> Event {
    match e {
        Event::Message(mut m) => {
            m.credit = 0;
            Event::Message(m)
        }
        other => other,
    }
}
