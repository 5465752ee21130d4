//! A listener of either driver serving on loopback for one test: started
//! on its own thread or runtime, stopped (and its serve result checked)
//! with [`Blocking::stop`] / [`Tokio::stop`].
#![allow(dead_code)]

use std::net::SocketAddr;

pub const ECHO: &str = "http://example.org/beep/echo";

/// A registry serving [`ECHO`] on the blocking driver.
pub fn blocking_echo() -> beep_blocking::Registry {
    let mut registry = beep_blocking::Registry::new();
    registry.register(
        ECHO,
        beep_blocking::ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    registry
}

/// A registry serving [`ECHO`] on the async driver.
pub fn tokio_echo() -> beep_tokio::Registry {
    let mut registry = beep_tokio::Registry::new();
    registry.register(
        ECHO,
        beep_tokio::ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        }),
    );
    registry
}

/// A beep-blocking listener serving on a thread.
pub struct Blocking {
    pub addr: SocketAddr,
    stop: beep_blocking::ShutdownHandle,
    thread: std::thread::JoinHandle<Result<(), beep_blocking::Error>>,
}

/// Binds 127.0.0.1:0, lets `configure` set hooks, and serves.
pub fn blocking(
    registry: beep_blocking::Registry,
    options: beep_blocking::Options,
    configure: impl FnOnce(&mut beep_blocking::Listener),
) -> Blocking {
    let mut listener =
        beep_blocking::Listener::bind("127.0.0.1:0", registry, options).expect("bind");
    configure(&mut listener);
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    Blocking { addr, stop, thread }
}

impl Blocking {
    /// Stops the listener; its serve must have gone well.
    pub fn stop(self) {
        self.stop.shutdown();
        self.thread.join().expect("serve thread").expect("serve");
    }
}

/// A beep-tokio listener serving on a runtime of its own.
pub struct Tokio {
    pub addr: SocketAddr,
    pub runtime: tokio::runtime::Runtime,
    stop: beep_tokio::ShutdownHandle,
    task: tokio::task::JoinHandle<Result<(), beep_tokio::Error>>,
}

/// Binds 127.0.0.1:0 on a new two-thread tokio runtime, lets `configure`
/// set hooks, and serves.
pub fn tokio(
    registry: beep_tokio::Registry,
    options: beep_tokio::Options,
    configure: impl FnOnce(&mut beep_tokio::Listener),
) -> Tokio {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, stop, task) = runtime.block_on(async {
        let mut listener = beep_tokio::Listener::bind("127.0.0.1:0", registry, options)
            .await
            .expect("bind");
        configure(&mut listener);
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        (addr, stop, tokio::spawn(listener.serve()))
    });
    Tokio {
        addr,
        runtime,
        stop,
        task,
    }
}

impl Tokio {
    /// Stops the listener; its serve must have gone well.
    pub fn stop(self) {
        self.stop.shutdown();
        self.runtime
            .block_on(self.task)
            .expect("serve task")
            .expect("serve");
    }
}
