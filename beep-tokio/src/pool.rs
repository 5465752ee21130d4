//! Channel pools (PyVortex `ChannelPool`): several channels running one
//! profile on a connection, handed out one borrower at a time. The
//! bookkeeping is beep-proto's `PoolState`, shared with beep-blocking; only
//! the waiting is async here.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use beep_proto::dispatch::{PoolState, Take};
use beep_proto::xml::Profile;
use event_listener::Event;

use crate::channel::Channel;
use crate::connection::Connection;
use crate::error::Error;
use crate::runtime::{self, BoxFuture};

/// How a pool gets each new channel: opens it on the connection.
type ChannelMaker = dyn Fn(Connection) -> BoxFuture<'static, Result<Channel, Error>> + Send + Sync;

/// A pool of channels running one profile on one connection.
///
/// ```no_run
/// use std::time::Duration;
/// use beep_tokio::ChannelPool;
/// use beep_proto::{Message, xml::Profile};
/// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
/// let pool = ChannelPool::new(&conn, Profile::new("http://example.org/beep/echo"), 2, 8).await?;
/// let channel = pool.next_ready(Duration::from_secs(5)).await?;
/// channel.request(Message::new("hi"), Duration::from_secs(5)).await?;
/// drop(channel); // back to the pool
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ChannelPool {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    state: Mutex<PoolState<Channel>>,
    released: Event,
    make: Box<ChannelMaker>,
}

impl ChannelPool {
    /// Opens `initial` channels now and grows to `max` on demand.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// let profile = beep_proto::xml::Profile::new("http://example.org/beep/echo");
    /// let pool = beep_tokio::ChannelPool::new(&conn, profile, 1, 4).await?;
    /// assert_eq!(pool.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn new(
        conn: &Connection,
        profile: Profile,
        initial: usize,
        max: usize,
    ) -> Result<Self, Error> {
        Self::with_channel_maker(conn, initial, max, move |conn| {
            let profile = profile.clone();
            async move { conn.open_channel(profile, None).await }
        })
        .await
    }

    /// Like [`ChannelPool::new`], calling `on_create` for every channel the
    /// pool opens (to set its message handler, say).
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// let profile = beep_proto::xml::Profile::new("http://example.org/beep/echo");
    /// let pool = beep_tokio::ChannelPool::with_create_handler(&conn, profile, 1, 4, |channel| {
    ///     println!("pool opened channel {}", channel.number());
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_create_handler(
        conn: &Connection,
        profile: Profile,
        initial: usize,
        max: usize,
        on_create: impl Fn(&Channel) + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let on_create = Arc::new(on_create);
        Self::with_channel_maker(conn, initial, max, move |conn| {
            let (profile, on_create) = (profile.clone(), on_create.clone());
            async move {
                let channel = conn.open_channel(profile, None).await?;
                on_create(&channel);
                Ok(channel)
            }
        })
        .await
    }

    /// A pool whose channels `make` opens, one call per channel (PyVortex's
    /// `create_channel` handler): with a `serverName`, piggybacked
    /// content, several profiles to choose from, or handlers of its own.
    /// It gets the pool's connection and returns a future of a channel
    /// open on it, or of the error that fails
    /// [`ChannelPool::next_ready`] (and the pool's creation, for the
    /// `initial` channels). Opens `initial` channels now and grows to
    /// `max` on demand, like [`ChannelPool::new`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use beep_proto::{Message, xml::Profile};
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// let pool = beep_tokio::ChannelPool::with_channel_maker(&conn, 1, 4, |conn| async move {
    ///     let offer = Profile::new("http://example.org/beep/echo").with_content("hello");
    ///     conn.open_channel(offer, Some("beep.example.org".into())).await
    /// })
    /// .await?;
    /// let channel = pool.next_ready(Duration::from_secs(5)).await?;
    /// channel.request(Message::new("hi"), Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_channel_maker<F, Fut>(
        conn: &Connection,
        initial: usize,
        max: usize,
        make: F,
    ) -> Result<Self, Error>
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Channel, Error>> + Send + 'static,
    {
        let make: Box<ChannelMaker> = Box::new(move |conn| Box::pin(make(conn)));
        let pool = ChannelPool {
            inner: Arc::new(Inner {
                conn: conn.clone(),
                state: Mutex::new(PoolState::new(max)),
                released: Event::new(),
                make,
            }),
        };
        for _ in 0..initial {
            if !pool.lock().reserve() {
                break;
            }
            let slot = Reserved::new(&pool);
            let channel = pool.create().await?;
            slot.fill(channel, false);
        }
        Ok(pool)
    }

    /// Builds the pool in the background and calls `created` with it (the
    /// PyVortex pool-created notification).
    ///
    /// ```no_run
    /// # fn run(conn: beep_tokio::Connection) {
    /// let profile = beep_proto::xml::Profile::new("http://example.org/beep/echo");
    /// beep_tokio::ChannelPool::new_with(&conn, profile, 2, 4, |pool| match pool {
    ///     Ok(pool) => println!("pool of {}", pool.len()),
    ///     Err(e) => eprintln!("no pool: {e}"),
    /// });
    /// # }
    /// ```
    pub fn new_with(
        conn: &Connection,
        profile: Profile,
        initial: usize,
        max: usize,
        created: impl FnOnce(Result<ChannelPool, Error>) + Send + 'static,
    ) {
        let owner = conn.clone();
        let task = async move { created(Self::new(&owner, profile, initial, max).await) };
        conn.shared.runtime.spawn(Box::pin(task));
    }

    fn lock(&self) -> MutexGuard<'_, PoolState<Channel>> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens one channel for a reserved slot (a [`Reserved`] frees the
    /// slot if this fails, panics or is cancelled).
    async fn create(&self) -> Result<Channel, Error> {
        (self.inner.make)(self.inner.conn.clone()).await
    }

    /// The next ready channel: an idle one, a new one while below the
    /// maximum, or the first one released within `timeout` (a timeout too
    /// long for a deadline, like `Duration::MAX`, waits for ever).
    ///
    /// ```no_run
    /// # async fn run(pool: beep_tokio::ChannelPool) -> Result<(), beep_tokio::Error> {
    /// let channel = pool.next_ready(std::time::Duration::from_secs(1)).await?;
    /// println!("using channel {}", channel.number());
    /// # Ok(()) }
    /// ```
    pub async fn next_ready(&self, timeout: Duration) -> Result<PooledChannel, Error> {
        let deadline = runtime::deadline(timeout);
        loop {
            // Listen before looking, so a release in between is not lost.
            let released = self.inner.released.listen();
            let take = self.lock().take();
            match take {
                Take::Idle(channel) if channel.profile().is_some() => return Ok(self.lend(channel)),
                // Closed meanwhile: drop it and look again.
                Take::Idle(_) => self.lock().remove(),
                Take::Create => {
                    let slot = Reserved::new(self);
                    let channel = self.create().await?;
                    slot.fill(channel.clone(), true);
                    return Ok(self.lend(channel));
                }
                Take::Wait => {
                    if let Some(reason) = self.inner.conn.close_reason() {
                        return Err(Error::Closed(reason));
                    }
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|left| left.is_zero()) {
                        return Err(Error::Timeout);
                    }
                    // Wake at least now and then to notice a closed connection.
                    let nap = Duration::from_millis(200);
                    let nap = left.map_or(nap, |left| left.min(nap));
                    let rt = self.inner.conn.shared.runtime.clone();
                    let _ = runtime::timeout(&*rt, nap, released).await;
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
    ///
    /// ```no_run
    /// # fn run(pool: beep_tokio::ChannelPool) { assert!(pool.len() <= 8); }
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the pool holds no channel.
    ///
    /// ```no_run
    /// # fn run(pool: beep_tokio::ChannelPool) { let _ = pool.is_empty(); }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Channels ready to be taken.
    ///
    /// ```no_run
    /// # fn run(pool: beep_tokio::ChannelPool) { let _ = pool.idle(); }
    /// ```
    pub fn idle(&self) -> usize {
        self.lock().idle()
    }
}

/// A slot reserved for a channel being opened. If the opening fails, or
/// the future opening it is dropped, the slot returns to the pool.
struct Reserved<'a> {
    pool: &'a ChannelPool,
    filled: bool,
}

impl<'a> Reserved<'a> {
    fn new(pool: &'a ChannelPool) -> Self {
        Reserved {
            pool,
            filled: false,
        }
    }

    /// The channel is open: it takes the slot.
    fn fill(mut self, channel: Channel, borrowed: bool) {
        self.pool.lock().created(channel, borrowed);
        self.filled = true;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if !self.filled {
            self.pool.lock().create_failed();
            self.pool.inner.released.notify(1);
        }
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
        self.pool.inner.released.notify(1);
    }
}
