//! Receive windows that grow by themselves (issue 9, "fast defaults";
//! RFC 3081 3.1.4 lets a receiver change its window with any SEQ): a
//! channel starts with the 4096 octets of RFC 3081 3.1.1, and each time
//! the peer uses the whole window up while the application keeps up, the
//! window doubles, up to `Config::max_receive_window`, within the
//! session's `Config::receive_budget`. Request and reply traffic, which
//! never uses a window up, keeps 4096; an application that takes nothing
//! keeps the peer at the first window.

mod common;

use std::collections::HashMap;

use beep_proto::frame::{Header, TRAILER, parse_header};
use beep_proto::{Config, Event, Message};
use common::{ECHO, Pair, listener_config};

/// What crossed the wire, frame by frame.
#[derive(Default)]
struct Seen {
    /// Each SEQ the listener sent: (channel, window).
    seqs: Vec<(u32, u32)>,
    /// The largest data frame payload the initiator sent.
    largest_frame: u32,
}

impl Seen {
    fn scan(&mut self, bytes: &[u8], from_listener: bool) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (header, used) = parse_header(rest, 128).unwrap().unwrap();
            rest = &rest[used..];
            match header {
                Header::Seq(seq) if from_listener => self.seqs.push((seq.channel, seq.window)),
                Header::Seq(_) => {}
                Header::Frame(h) => {
                    if !from_listener {
                        self.largest_frame = self.largest_frame.max(h.size);
                    }
                    rest = &rest[h.size as usize + TRAILER.len()..];
                }
            }
        }
    }

    /// The largest window the listener advertised on `channel`.
    fn widest(&self, channel: u32) -> u32 {
        self.seqs
            .iter()
            .filter(|(c, _)| *c == channel)
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(4096)
    }
}

/// Moves bytes both ways (whole `poll_transmit` batches, so frames are
/// never split) and collects events, watching the frames.
fn pump(pair: &mut Pair, seen: &mut Seen) {
    loop {
        let mut moved = false;
        while let Some(bytes) = pair.a.poll_transmit() {
            seen.scan(&bytes, false);
            pair.b.handle_input(&bytes).unwrap();
            moved = true;
        }
        while let Some(bytes) = pair.b.poll_transmit() {
            seen.scan(&bytes, true);
            pair.a.handle_input(&bytes).unwrap();
            moved = true;
        }
        while let Some(e) = pair.a.poll_event() {
            pair.a_events.push(e);
            moved = true;
        }
        while let Some(e) = pair.b.poll_event() {
            pair.b_events.push(e);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn messages(events: &mut Vec<Event>) -> usize {
    let n = events
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count();
    events.clear();
    n
}

#[test]
fn rfc3081_3_1_4_a_window_the_peer_uses_up_grows_to_its_maximum_and_frames_with_it() {
    let mut pair = Pair::new();
    let mut seen = Seen::default();
    let channel = pair.open(ECHO);
    // One-way bulk: 4 MiB queued at once, delivered and credited as it
    // comes; the sender always has more than the window lets through.
    for _ in 0..64 {
        pair.a
            .send_msg(channel, Message::new(vec![7u8; 64 << 10]))
            .unwrap();
    }
    pump(&mut pair, &mut seen);
    assert_eq!(messages(&mut pair.b_events), 64);
    // From 4096, doubling, toward 1 MiB, the default maximum, and never
    // beyond it. (A SEQ offers the window less what the application still
    // holds, so the last doubling shows as more than 512 KiB.)
    let widest = seen.widest(channel);
    assert!((512 << 10..=1 << 20).contains(&widest), "{:?}", seen.seqs);
    let widths: Vec<u32> = seen.seqs.iter().map(|(_, w)| *w).collect();
    assert!(
        widths
            .iter()
            .any(|w| (4096..1 << 20).contains(w) && *w > 4096)
    );
    // The sender's frames grow with the window, up to its 64 KiB frames.
    assert_eq!(seen.largest_frame, 64 << 10);
}

#[test]
fn a_window_with_room_for_eight_frames_the_peer_never_fills_stops_growing() {
    let mut pair = Pair::new();
    let mut seen = Seen::default();
    let channel = pair.open(ECHO);
    // 64 KiB at a time, each delivered before the next is sent: the peer
    // never runs the window low, and once eight of its 64 KiB frames fit,
    // its frames no longer count as large (512 KiB).
    for _ in 0..64 {
        pair.a
            .send_msg(channel, Message::new(vec![7u8; 64 << 10]))
            .unwrap();
        pump(&mut pair, &mut seen);
    }
    assert_eq!(seen.widest(channel), 512 << 10, "{:?}", seen.seqs);
}

#[test]
fn rfc3081_3_1_1_request_and_reply_traffic_keeps_the_first_window() {
    let mut pair = Pair::new();
    let mut seen = Seen::default();
    let channel = pair.open(ECHO);
    for _ in 0..500 {
        pair.a
            .send_msg(channel, Message::new(vec![1u8; 100]))
            .unwrap();
        pump(&mut pair, &mut seen);
        let msgno = pair
            .b_events
            .drain(..)
            .find_map(|e| match e {
                Event::Message(m) => Some(m.msgno),
                _ => None,
            })
            .unwrap();
        pair.b
            .send_rpy(channel, msgno, Message::new(vec![2u8; 100]))
            .unwrap();
        pump(&mut pair, &mut seen);
    }
    assert!(seen.seqs.iter().all(|(_, w)| *w <= 4096), "{:?}", seen.seqs);
    assert!(seen.largest_frame <= 4096);
}

#[test]
fn the_windows_of_all_channels_stay_within_the_receive_budget() {
    let budget = 256 << 10;
    let listener = Config {
        receive_budget: budget,
        ..listener_config()
    };
    let mut pair = Pair::with(Config::default(), listener);
    let mut seen = Seen::default();
    let channels: Vec<u32> = (0..8).map(|_| pair.open(ECHO)).collect();
    for _ in 0..16 {
        for &channel in &channels {
            pair.a
                .send_msg(channel, Message::new(vec![3u8; 64 << 10]))
                .unwrap();
        }
        pump(&mut pair, &mut seen);
    }
    assert_eq!(messages(&mut pair.b_events), 16 * 8);
    // Each channel's latest window, summed at every SEQ: never above the
    // budget (a channel's window is at least what its SEQ offers).
    let mut latest: HashMap<u32, u32> = channels.iter().map(|&c| (c, 4096)).collect();
    let mut widest_sum = 0u64;
    for (channel, window) in &seen.seqs {
        latest.insert(*channel, *window);
        widest_sum = widest_sum.max(latest.values().map(|&w| u64::from(w)).sum());
    }
    assert!(widest_sum <= budget as u64, "{widest_sum} > {budget}");
    assert!(
        channels.iter().any(|&c| seen.widest(c) > 4096),
        "the windows grew within the budget: {:?}",
        seen.seqs
    );
}

#[test]
fn an_application_that_takes_nothing_holds_at_most_the_first_window() {
    let listener = Config {
        auto_credit: false,
        ..listener_config()
    };
    let mut pair = Pair::with(Config::default(), listener);
    let mut seen = Seen::default();
    let channel = pair.open(ECHO);
    for _ in 0..20 {
        pair.a
            .send_msg(channel, Message::new(vec![5u8; 1000]))
            .unwrap();
    }
    pump(&mut pair, &mut seen);
    // The peer ran dry, but a window grows only as octets are given back:
    // four messages of 1000 octets (with their MIME block) fit in 4096.
    assert_eq!(messages(&mut pair.b_events), 4);
    assert!(pair.a.queued_output() > 15 * 1000);
    assert!(seen.seqs.is_empty(), "{:?}", seen.seqs);
}
