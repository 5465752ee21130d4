//! Throughput of the Sans-IO core on one thread, no sockets:
//!
//! * `header_parse`: small frame headers parsed per second;
//! * `pipelined_echo_100B`: two in-memory sessions, 100-byte MSGs pipelined
//!   and echoed with RPY (messages per second, request and reply counted
//!   once);
//! * `bulk_64KiB_1MiB_window`: one-way 64 KiB messages with 1 MiB windows
//!   (bytes per second).
//!
//! Run: `cargo bench -p beep-proto --bench core`.

use std::hint::black_box;

use beep_proto::frame::parse_header;
use beep_proto::xml::Profile;
use beep_proto::{Config, Event, Message, Session};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PROFILE: &str = "http://example.org/beep/bench";

fn header_parse(c: &mut Criterion) {
    let headers: Vec<&[u8]> = vec![
        b"MSG 1 0 . 0 100\r\n",
        b"RPY 3 17 . 4096 100\r\n",
        b"ANS 5 2147483647 * 4294967295 4096 12\r\n",
        b"SEQ 7 123456 4096\r\n",
    ];
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(headers.len() as u64));
    group.bench_function("header_parse", |b| {
        b.iter(|| {
            for h in &headers {
                black_box(parse_header(black_box(h), 128).unwrap());
            }
        })
    });
    group.finish();
}

/// Two sessions with one channel open between them.
fn connected(config: Config) -> (Session, Session, u32) {
    let mut a = Session::initiator(config.clone());
    let mut b = Session::listener(Config {
        profiles: vec![PROFILE.into()],
        ..config
    });
    let channel = a.open_channel(vec![Profile::new(PROFILE)], None).unwrap();
    for _ in 0..10 {
        move_bytes(&mut a, &mut b);
        while let Some(e) = b.poll_event() {
            if let Event::StartRequested(r) = e {
                b.accept_start(r.channel, Profile::new(PROFILE)).unwrap();
            }
        }
        move_bytes(&mut b, &mut a);
        while a.poll_event().is_some() {}
    }
    assert!(a.is_channel_open(channel));
    (a, b, channel)
}

fn move_bytes(from: &mut Session, to: &mut Session) -> usize {
    let mut n = 0;
    while let Some(bytes) = from.poll_transmit() {
        n += bytes.len();
        to.handle_input(&bytes).unwrap();
    }
    n
}

fn pipelined_echo(c: &mut Criterion) {
    const BATCH: u64 = 1000;
    let (mut a, mut b, channel) = connected(Config {
        receive_window: 1 << 20,
        max_frame_size: 64 << 10,
        ..Config::default()
    });
    let payload = Message::new(Bytes::from(vec![b'x'; 100]));
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("pipelined_echo_100B", |bench| {
        bench.iter(|| {
            for _ in 0..BATCH {
                a.send_msg(channel, payload.clone()).unwrap();
            }
            let mut replies = 0;
            while replies < BATCH {
                move_bytes(&mut a, &mut b);
                while let Some(e) = b.poll_event() {
                    if let Event::Message(m) = e {
                        b.send_rpy(m.channel, m.msgno, m.message).unwrap();
                    }
                }
                move_bytes(&mut b, &mut a);
                while let Some(e) = a.poll_event() {
                    if let Event::Message(_) = e {
                        replies += 1;
                    }
                }
            }
        })
    });
    group.finish();
}

fn bulk(c: &mut Criterion) {
    const MESSAGES: u64 = 64;
    const SIZE: usize = 64 << 10;
    let (mut a, mut b, channel) = connected(Config {
        receive_window: 1 << 20,
        max_frame_size: 64 << 10,
        transmit_batch: 256 << 10,
        ..Config::default()
    });
    let payload = Message::new(Bytes::from(vec![b'x'; SIZE]));
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Bytes(MESSAGES * SIZE as u64));
    group.bench_function("bulk_64KiB_1MiB_window", |bench| {
        bench.iter(|| {
            for _ in 0..MESSAGES {
                a.send_msg(channel, payload.clone()).unwrap();
            }
            let mut received = 0;
            while received < MESSAGES {
                move_bytes(&mut a, &mut b);
                while let Some(e) = b.poll_event() {
                    if let Event::Message(m) = e {
                        received += 1;
                        // Sink: an empty reply.
                        b.send_rpy(m.channel, m.msgno, Message::default()).unwrap();
                    }
                }
                move_bytes(&mut b, &mut a);
                while a.poll_event().is_some() {}
            }
        })
    });
    group.finish();
}

criterion_group!(benches, header_parse, pipelined_echo, bulk);
criterion_main!(benches);
