//! Channel pools (PyVortex `ChannelPool`): several channels running one
//! profile on a connection, handed out one borrower at a time.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use beep_proto::dispatch::{PoolState, Take};
use beep_proto::xml::Profile;

use crate::channel::Channel;
use crate::connection::Connection;
use crate::error::Error;

/// How a pool gets each new channel: opens it on the connection.
type ChannelMaker = dyn Fn(&Connection) -> Result<Channel, Error> + Send + Sync;

/// A pool of channels running one profile on one connection.
///
/// ```no_run
/// use std::time::Duration;
/// use beep_blocking::{ChannelPool, Connection, Options};
/// use beep_proto::{Message, xml::Profile};
/// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
/// let pool = ChannelPool::new(&conn, Profile::new("http://example.org/beep/echo"), 2, 8)?;
/// let channel = pool.next_ready(Duration::from_secs(5))?;
/// channel.request(Message::new("hi"), Duration::from_secs(5))?;
/// drop(channel); // back to the pool
/// # Ok::<(), beep_blocking::Error>(())
/// ```
#[derive(Clone)]
pub struct ChannelPool {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    state: Mutex<PoolState<Channel>>,
    released: Condvar,
    make: Box<ChannelMaker>,
}

impl ChannelPool {
    /// Opens `initial` channels now and grows to `max` on demand.
    pub fn new(
        conn: &Connection,
        profile: Profile,
        initial: usize,
        max: usize,
    ) -> Result<Self, Error> {
        Self::with_channel_maker(conn, initial, max, move |conn| {
            conn.open_channel(profile.clone(), None)
        })
    }

    /// Like [`ChannelPool::new`], calling `on_create` for every channel the
    /// pool opens (to set its message handler, say).
    pub fn with_create_handler(
        conn: &Connection,
        profile: Profile,
        initial: usize,
        max: usize,
        on_create: impl Fn(&Channel) + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        Self::with_channel_maker(conn, initial, max, move |conn| {
            let channel = conn.open_channel(profile.clone(), None)?;
            on_create(&channel);
            Ok(channel)
        })
    }

    /// A pool whose channels `make` opens, one call per channel (PyVortex's
    /// `create_channel` handler): with a `serverName`, piggybacked
    /// content, several profiles to choose from, or handlers of its own.
    /// It gets the pool's connection and returns a channel open on it, or
    /// the error that fails [`ChannelPool::next_ready`] (and the pool's
    /// creation, for the `initial` channels). Opens `initial` channels
    /// now and grows to `max` on demand, like [`ChannelPool::new`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use beep_blocking::{ChannelPool, Connection, Options};
    /// use beep_proto::{Message, xml::Profile};
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// let pool = ChannelPool::with_channel_maker(&conn, 1, 4, |conn| {
    ///     let offer = Profile::new("http://example.org/beep/echo").with_content("hello");
    ///     conn.open_channel(offer, Some("beep.example.org".into()))
    /// })?;
    /// let channel = pool.next_ready(Duration::from_secs(5))?;
    /// channel.request(Message::new("hi"), Duration::from_secs(5))?;
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn with_channel_maker(
        conn: &Connection,
        initial: usize,
        max: usize,
        make: impl Fn(&Connection) -> Result<Channel, Error> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let pool = ChannelPool {
            inner: Arc::new(Inner {
                conn: conn.clone(),
                state: Mutex::new(PoolState::new(max)),
                released: Condvar::new(),
                make: Box::new(make),
            }),
        };
        for _ in 0..initial {
            if !pool.lock().reserve() {
                break;
            }
            let channel = pool.create()?;
            pool.lock().created(channel, false);
        }
        Ok(pool)
    }

    /// Builds the pool on another thread and calls `created` with it (the
    /// PyVortex pool-created notification).
    pub fn new_with(
        conn: &Connection,
        profile: Profile,
        initial: usize,
        max: usize,
        created: impl FnOnce(Result<ChannelPool, Error>) + Send + 'static,
    ) {
        let conn = conn.clone();
        std::thread::spawn(move || created(Self::new(&conn, profile, initial, max)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState<Channel>> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens one channel for a reserved slot, freeing the slot on failure
    /// (also when the maker panics: the panic goes on to the caller).
    fn create(&self) -> Result<Channel, Error> {
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.inner.make)(&self.inner.conn)
        }));
        match made {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => {
                self.create_failed();
                Err(e)
            }
            Err(panic) => {
                self.create_failed();
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Frees the slot of a channel that could not be made.
    fn create_failed(&self) {
        self.lock().create_failed();
        self.inner.released.notify_one();
    }

    /// The next ready channel: an idle one, a new one while below the
    /// maximum, or the first one released within `timeout` (a timeout too
    /// long for a deadline, like `Duration::MAX`, waits for ever).
    pub fn next_ready(&self, timeout: Duration) -> Result<PooledChannel, Error> {
        let deadline = crate::deadline::after(timeout);
        let mut state = self.lock();
        loop {
            match state.take() {
                Take::Idle(channel) if channel.profile().is_some() => {
                    return Ok(self.lend(channel));
                }
                // Closed meanwhile: drop it and look again.
                Take::Idle(_) => state.remove(),
                Take::Create => {
                    drop(state);
                    let channel = self.create()?;
                    self.lock().created(channel.clone(), true);
                    return Ok(self.lend(channel));
                }
                Take::Wait => {
                    let left = crate::deadline::left(deadline);
                    if crate::deadline::passed(left) {
                        return Err(Error::Timeout);
                    }
                    self.inner.conn.live()?;
                    // Held output of a batch (a handler) goes out first.
                    drop(state);
                    crate::connection::cork::release_held();
                    state = self.lock();
                    // Wake at least now and then to notice a closed connection.
                    let nap = Duration::from_millis(200);
                    state = self
                        .inner
                        .released
                        .wait_timeout(state, left.map_or(nap, |left| left.min(nap)))
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
            }
        }
    }

    fn lend(&self, channel: Channel) -> PooledChannel {
        PooledChannel {
            channel,
            pool: self.clone(),
        }
    }

    /// Channels open (or being opened).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the pool holds no channel.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Channels ready to be taken.
    pub fn idle(&self) -> usize {
        self.lock().idle()
    }
}

/// A channel borrowed from a pool; dropping it releases it (PyVortex
/// `release_channel`).
pub struct PooledChannel {
    channel: Channel,
    pool: ChannelPool,
}

impl std::ops::Deref for PooledChannel {
    type Target = Channel;

    fn deref(&self) -> &Channel {
        &self.channel
    }
}

impl Drop for PooledChannel {
    fn drop(&mut self) {
        // Channels are cheap handles: the pool keeps a clone.
        let open = self.channel.profile().is_some();
        self.pool.lock().give_back(self.channel.clone(), open);
        self.pool.inner.released.notify_one();
    }
}
