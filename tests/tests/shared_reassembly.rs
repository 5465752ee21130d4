//! A listener's connections share one reassembly budget (issue 10): each
//! connection within its own `max_reassembly`, their unfinished messages
//! together are bounded by the listener's. A client whose unfinished
//! message takes the total past it is disconnected with the reason, the
//! others go on, and the budget is given back as connections end. Both
//! listeners; the unfinished messages are sent with the payload feeder.

use std::sync::mpsc;
use std::time::Duration;

use beep_proto::dispatch::EndReason;
use beep_proto::xml::Profile;
use beep_proto::{Message, ProtocolError, SharedBudget};

mod serving;

use serving::ECHO;

const LIMIT: usize = 1 << 20;
const BOUND: Duration = Duration::from_secs(10);

/// Two clients of the listener at `addr` each leave 700 KB of a MSG
/// unfinished: the second takes the total past `LIMIT`.
fn check(addr: std::net::SocketAddr, budget: &SharedBudget, ends: &mpsc::Receiver<EndReason>) {
    let first = beep_blocking::Connection::connect(addr, Default::default()).unwrap();
    let second = beep_blocking::Connection::connect(addr, Default::default()).unwrap();
    let echo1 = first.open_channel(Profile::new(ECHO), None).unwrap();
    let echo2 = second.open_channel(Profile::new(ECHO), None).unwrap();
    let mut upload1 = echo1.feed_msg(Message::verbatim("")).unwrap();
    upload1.feed(vec![1u8; 700_000]).unwrap();
    // Wait until the listener holds it.
    let deadline = std::time::Instant::now() + BOUND;
    while budget.used() < 600_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "held {}",
            budget.used()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut upload2 = echo2.feed_msg(Message::verbatim("")).unwrap();
    upload2.feed(vec![2u8; 700_000]).unwrap();
    let reason = ends.recv_timeout(BOUND).expect("a connection ended");
    assert_eq!(
        reason,
        EndReason::Violation(ProtocolError::SharedReassemblyBudgetExceeded { limit: LIMIT })
    );
    assert!(
        second.wait_closed(BOUND).is_some(),
        "the second was disconnected"
    );
    // The first goes on: its message completes and is echoed.
    let replies = echo1.incoming();
    upload1.finish().unwrap();
    let echoed = replies.recv_timeout(BOUND).unwrap();
    assert_eq!(echoed.message.body().len(), 700_000);
    first.close().unwrap();
    let _ = ends.recv_timeout(BOUND);
    assert_eq!(budget.used(), 0, "given back as the connections ended");
}

#[test]
fn blocking_listener_bounds_all_its_connections_together() {
    let budget = SharedBudget::new(LIMIT);
    let options = beep_blocking::Options {
        shared_reassembly: Some(budget.clone()),
        ..Default::default()
    };
    let (tx, ends) = mpsc::channel();
    let server = serving::blocking(serving::blocking_echo(), options, move |listener| {
        let tx = std::sync::Mutex::new(tx);
        listener.on_connection_end(move |_, reason| {
            let _ = tx.lock().unwrap().send(reason.clone());
        });
    });
    check(server.addr, &budget, &ends);
    server.stop();
}

#[test]
fn tokio_listener_bounds_all_its_connections_together() {
    let budget = SharedBudget::new(LIMIT);
    let options = beep_tokio::Options {
        shared_reassembly: Some(budget.clone()),
        ..Default::default()
    };
    let (tx, ends) = mpsc::channel();
    let server = serving::tokio(serving::tokio_echo(), options, move |listener| {
        let tx = std::sync::Mutex::new(tx);
        listener.on_connection_end(move |_, reason| {
            let _ = tx.lock().unwrap().send(reason.clone());
        });
    });
    check(server.addr, &budget, &ends);
    server.stop();
}
