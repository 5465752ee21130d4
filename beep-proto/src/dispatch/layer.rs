//! The driver layer: what a driver does with the [`Outcome`]s of its
//! [`Core`], written once for every driver. A waiter is woken with its
//! result (or its callback queued for the dispatcher), work for
//! application handlers becomes an [`Action`], a closed channel's
//! handlers and the connection's close callbacks are dropped and run on
//! the dispatcher (never under the driver's lock), and the end is reported
//! to the driver once.
//!
//! A driver supplies only what differs, through [`Driver`]: how a waiting
//! caller is woken (a thread, a future), where actions go (a worker's
//! queue, a task's channel) and what it does when the connection ends
//! (flush and close the socket, stop its tasks). Its per-channel handlers
//! are its own type (`H`: closures that block, or that return futures).

use std::collections::HashMap;
use std::ops::DerefMut;
use std::sync::Arc;

use super::{CloseRequest, Core, Done, EndReason, Error, IdKeys, Outcome, StartDecision};
use crate::error::UsageError;
use crate::event::{IncomingFrame, IncomingMessage, StartRequest};
use crate::reply_code::ReplyCode;
use crate::session::Session;
use crate::trace::Trace;
use crate::xml::{Greeting, Profile};

/// Work for a driver's dispatcher, which runs application code one action
/// at a time, in the order they were routed.
///
/// ```
/// use beep_proto::dispatch::Action;
/// let run = Action::Run(Box::new(|| println!("on the dispatcher")));
/// assert!(matches!(run, Action::Run(_)));
/// ```
pub enum Action {
    /// The peer asks to start a channel: consult the profile handlers and
    /// answer ([`Core::answer_start`]).
    Start(StartRequest),
    /// A message for the channel's handler (report it with
    /// [`Core::message_handled`]).
    Message(IncomingMessage),
    /// A frame for the channel's frame handler (report it with
    /// [`Core::message_handled`]).
    Frame(IncomingFrame),
    /// The peer asks to close a channel (0: the session), with its code
    /// and diagnostic: ask the channel's close handler
    /// ([`CloseRequest::decide`]) and answer ([`Core::answer_close`]).
    CloseRequested(CloseRequest),
    /// The peer asks to begin TLS: ask the listener's
    /// [`TlsAcceptor`](super::TlsAcceptor) and answer
    /// ([`Core::answer_tls`]).
    TlsRequested(crate::event::TlsRequest),
    /// The peer's authentication needs the application: ask the
    /// profiles' auth handler and answer ([`Core::answer_auth`]).
    AuthRequested(crate::sasl::AuthRequest),
    /// Application code to run (a callback, or dropping closures that
    /// must not be dropped under the driver's lock).
    Run(Box<dyn FnOnce() + Send>),
    /// The connection ended: nothing follows, the dispatcher stops.
    Exit,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Start(request) => f.debug_tuple("Start").field(request).finish(),
            Action::Message(m) => f.debug_tuple("Message").field(m).finish(),
            Action::Frame(frame) => f.debug_tuple("Frame").field(frame).finish(),
            Action::CloseRequested(request) => {
                f.debug_tuple("CloseRequested").field(request).finish()
            }
            Action::TlsRequested(request) => f.debug_tuple("TlsRequested").field(request).finish(),
            Action::AuthRequested(request) => {
                f.debug_tuple("AuthRequested").field(request).finish()
            }
            Action::Run(_) => f.write_str("Run(..)"),
            Action::Exit => f.write_str("Exit"),
        }
    }
}

/// A caller waiting for a result: one that waits in the driver's own way
/// (`T`: a blocked thread's channel, a future's oneshot), or a callback,
/// which runs on the dispatcher.
///
/// ```
/// use beep_proto::dispatch::{Done, Notify};
/// let callback: Notify<()> = Notify::Call(Box::new(|result| assert_eq!(result.unwrap(), Done::Closed)));
/// let Notify::Call(f) = callback else { unreachable!() };
/// f(Ok(Done::Closed));
/// ```
pub enum Notify<T> {
    /// A caller waiting in the driver's way: woken by [`Driver::wake`].
    Wait(T),
    /// A callback: queued as an [`Action::Run`], never run under the lock.
    Call(Box<dyn FnOnce(Result<Done, Error>) + Send>),
}

impl<T: std::fmt::Debug> std::fmt::Debug for Notify<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notify::Wait(wait) => f.debug_tuple("Wait").field(wait).finish(),
            Notify::Call(_) => f.write_str("Call(..)"),
        }
    }
}

/// Runs once when the connection ends, with the reason.
pub type CloseCallback = Box<dyn FnOnce(&EndReason) + Send>;

/// The handlers of one open channel, whatever a driver's handlers are
/// (closures that block, or that return futures). A channel the
/// application opened starts with the default (none).
///
/// ```
/// use beep_proto::dispatch::Handlers;
/// #[derive(Default)]
/// struct Mine { frame: Option<fn(&[u8])> }
/// impl Handlers for Mine {
///     fn frames(&self) -> bool {
///         self.frame.is_some()
///     }
/// }
/// assert!(!Mine::default().frames());
/// ```
pub trait Handlers: Default + Send + 'static {
    /// True if the channel delivers frames to a frame handler instead of
    /// whole messages ([`Core::stream_frames`]).
    fn frames(&self) -> bool;
}

impl Handlers for () {
    /// `()`: no handlers, whole messages.
    fn frames(&self) -> bool {
        false
    }
}

/// The handlers of one open channel, as both drivers keep them: shared
/// closures (`dyn` types behind [`Arc`]s) for messages (`M`), frames
/// (`F`, set when the channel delivers frames) and close requests (`C`,
/// set by a profile or on a channel the application opened), each
/// optional. What the closures are (blocking, or returning futures)
/// is the driver's.
///
/// ```
/// use std::sync::Arc;
/// use beep_proto::dispatch::{ChannelHandlers, Handlers};
/// type OnMessage = dyn Fn(&[u8]) + Send + Sync;
/// type OnClose = dyn Fn() -> bool + Send + Sync;
/// let echo: Arc<OnMessage> = Arc::new(|_| {});
/// let h: ChannelHandlers<OnMessage, OnMessage, OnClose> = ChannelHandlers::new(echo, None, None);
/// assert!(h.message.is_some() && !h.frames());
/// assert!(ChannelHandlers::<OnMessage, OnMessage, OnClose>::default().message.is_none());
/// ```
pub struct ChannelHandlers<M: ?Sized, F: ?Sized, C: ?Sized> {
    /// The message handler.
    pub message: Option<Arc<M>>,
    /// The close handler (none: agree).
    pub close: Option<Arc<C>>,
    /// The frame handler, set when the channel delivers frames instead of
    /// messages.
    pub frame: Option<Arc<F>>,
}

impl<M: ?Sized, F: ?Sized, C: ?Sized> ChannelHandlers<M, F, C> {
    /// The handlers a channel started from a profile gets.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use beep_proto::dispatch::{ChannelHandlers, Handlers};
    /// let frames: Arc<dyn Fn(&[u8]) + Send + Sync> = Arc::new(|_| {});
    /// let h = ChannelHandlers::<_, _, dyn Fn() -> bool + Send + Sync>::new(frames.clone(), None, Some(frames));
    /// assert!(h.frames());
    /// ```
    pub fn new(message: Arc<M>, close: Option<Arc<C>>, frame: Option<Arc<F>>) -> Self {
        ChannelHandlers {
            message: Some(message),
            close,
            frame,
        }
    }
}

impl<M: ?Sized, F: ?Sized, C: ?Sized> Default for ChannelHandlers<M, F, C> {
    fn default() -> Self {
        ChannelHandlers {
            message: None,
            close: None,
            frame: None,
        }
    }
}

impl<M: ?Sized, F: ?Sized, C: ?Sized> Clone for ChannelHandlers<M, F, C> {
    fn clone(&self) -> Self {
        ChannelHandlers {
            message: self.message.clone(),
            close: self.close.clone(),
            frame: self.frame.clone(),
        }
    }
}

impl<M: ?Sized, F: ?Sized, C: ?Sized> std::fmt::Debug for ChannelHandlers<M, F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelHandlers")
            .field("message", &self.message.is_some())
            .field("close", &self.close.is_some())
            .field("frame", &self.frame.is_some())
            .finish()
    }
}

impl<M, F, C> Handlers for ChannelHandlers<M, F, C>
where
    M: ?Sized + Send + Sync + 'static,
    F: ?Sized + Send + Sync + 'static,
    C: ?Sized + Send + Sync + 'static,
{
    fn frames(&self) -> bool {
        self.frame.is_some()
    }
}

/// What a driver supplies to the [`Layer`]: the parts that depend on how
/// it waits and where handlers run. Its methods are called with the
/// driver's lock on the layer held: they wake and hand over, and run no
/// application code.
///
/// ```
/// use std::sync::mpsc;
/// use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
///
/// /// A driver whose callers wait on channels and whose dispatcher reads a queue.
/// struct Threads { queue: mpsc::Sender<Action> }
///
/// impl Driver for Threads {
///     type Wait = mpsc::Sender<Result<Done, Error>>;
///     type Handlers = ();
///     fn wake(&self, wait: Self::Wait, result: Result<Done, Error>) {
///         let _ = wait.send(result);
///     }
///     fn ended(&self, reason: &EndReason) {
///         println!("close the socket: {reason}");
///     }
///     fn dispatch(&self, _: &Layer<Self::Wait, Self::Handlers>, actions: &mut Vec<Action>) {
///         for action in actions.drain(..) {
///             let _ = self.queue.send(action);
///         }
///     }
/// }
///
/// let (queue, dispatcher) = mpsc::channel();
/// let driver = Threads { queue };
/// let mut layer: Layer<_, ()> = Layer::new(beep_proto::Session::initiator(Default::default()));
/// layer.end(EndReason::Shutdown, &driver, &mut Vec::new());
/// // The handlers go (on the dispatcher), then the dispatcher stops.
/// assert!(matches!(dispatcher.try_iter().last(), Some(Action::Exit)));
/// ```
pub trait Driver {
    /// How a caller of this driver waits ([`Notify::Wait`]).
    type Wait;
    /// The handlers of one open channel.
    type Handlers: Handlers;

    /// Wakes a waiting caller with its result.
    ///
    /// ```
    /// # use std::sync::mpsc;
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Threads;
    /// # impl Driver for Threads {
    /// #     type Wait = mpsc::Sender<Result<Done, Error>>;
    /// #     type Handlers = ();
    /// fn wake(&self, wait: Self::Wait, result: Result<Done, Error>) {
    ///     // The caller may have given up: nobody to tell then.
    ///     let _ = wait.send(result);
    /// }
    /// #     fn ended(&self, _: &EndReason) {}
    /// #     fn dispatch(&self, _: &Layer<Self::Wait, ()>, _: &mut Vec<Action>) {}
    /// # }
    /// ```
    fn wake(&self, wait: Self::Wait, result: Result<Done, Error>);

    /// The connection ended (once): the actions that end the dispatcher
    /// are queued, not yet dispatched. After a release the driver still
    /// flushes the final `<ok/>`; after anything else it may drop the
    /// stream at once.
    ///
    /// ```
    /// # use std::sync::atomic::{AtomicBool, Ordering};
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Tasks { aborted: AtomicBool }
    /// # impl Driver for Tasks {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// fn ended(&self, reason: &EndReason) {
    ///     if *reason != EndReason::Released {
    ///         self.aborted.store(true, Ordering::Release);
    ///     }
    /// }
    /// #     fn dispatch(&self, _: &Layer<(), ()>, _: &mut Vec<Action>) {}
    /// # }
    /// ```
    fn ended(&self, reason: &EndReason);

    /// Hands routed actions to the dispatcher, in order, draining
    /// `actions`. Called at the end of every [`Layer::apply`] that routed
    /// an outcome or has actions to hand over, still under the lock (so
    /// nothing can follow an [`Action::Exit`]); it may look at the layer,
    /// e.g. to wake senders waiting for [`Room`](super::Room). A call
    /// that routed nothing changed nothing, so it is not made: on the
    /// per-message path most session calls (a transmit that found the
    /// queue empty, say) route nothing.
    ///
    /// ```
    /// # use std::sync::mpsc;
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Threads { queue: mpsc::Sender<Action> }
    /// # impl Driver for Threads {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// #     fn ended(&self, _: &EndReason) {}
    /// fn dispatch(&self, _: &Layer<(), ()>, actions: &mut Vec<Action>) {
    ///     for action in actions.drain(..) {
    ///         let _ = self.queue.send(action);
    ///     }
    /// }
    /// # }
    /// ```
    fn dispatch(&self, layer: &Layer<Self::Wait, Self::Handlers>, actions: &mut Vec<Action>);
}

/// The state behind a driver's lock: the [`Core`] (session and waiters),
/// the handlers of each open channel, and the callbacks to run when the
/// connection ends.
///
/// ```
/// use beep_proto::dispatch::{Layer, Notify};
/// use beep_proto::{xml::Profile, Session};
/// let mut layer: Layer<(), ()> = Layer::new(Session::initiator(Default::default()));
/// assert!(layer.core.session().queued_output() > 0, "the greeting");
/// layer.core.open_channel(Profile::new("p"), None, Notify::Wait(())).unwrap();
/// assert!(layer.channels.is_empty(), "handlers come with the peer's answer");
/// ```
pub struct Layer<T, H> {
    /// The session and the callers waiting on it.
    pub core: Core<Notify<T>>,
    /// The handlers of each open channel that has some (hashed with
    /// [`IdKeys`]: looked up for every message, by the peer's numbers).
    pub channels: HashMap<u32, H, IdKeys>,
    on_close: Vec<CloseCallback>,
    trace: Trace,
    /// Outcomes being applied, kept between calls: routing is done for
    /// every message, and its list need not be allocated each time.
    scratch: Vec<Outcome<Notify<T>>>,
}

impl<T, H> std::fmt::Debug for Layer<T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("ended", &self.core.ended())
            .field("channels", &self.channels.keys())
            .field("on_close", &self.on_close.len())
            .finish_non_exhaustive()
    }
}

impl<T, H: Handlers> Layer<T, H> {
    /// Wraps a fresh session (see [`Core::new`]).
    ///
    /// ```
    /// let layer: beep_proto::dispatch::Layer<(), ()> =
    ///     beep_proto::dispatch::Layer::new(beep_proto::Session::initiator(Default::default()));
    /// assert!(layer.core.ended().is_none());
    /// ```
    pub fn new(session: Session) -> Self {
        Layer {
            core: Core::new(session),
            channels: HashMap::default(),
            on_close: Vec::new(),
            trace: Trace::new(),
            scratch: Vec::new(),
        }
    }

    /// Names the peer (its address) in this connection's `tracing`
    /// events (see the crate's `tracing` feature).
    ///
    /// ```
    /// let mut layer: beep_proto::dispatch::Layer<(), ()> =
    ///     beep_proto::dispatch::Layer::new(beep_proto::Session::initiator(Default::default()));
    /// layer.name_peer(&"127.0.0.1:10288");
    /// ```
    pub fn name_peer(&mut self, peer: &dyn std::fmt::Display) {
        self.trace.set_peer(peer);
    }

    /// Takes the output that is ready ([`Core::poll_transmit_vectored`]),
    /// tracing the frame headers it holds when frames are traced. Route
    /// afterwards ([`Layer::route`]): taking output can make room.
    ///
    /// ```
    /// let mut layer: beep_proto::dispatch::Layer<(), ()> =
    ///     beep_proto::dispatch::Layer::new(beep_proto::Session::initiator(Default::default()));
    /// let mut chunks = Vec::new();
    /// assert!(layer.poll_transmit_vectored(&mut chunks), "the greeting");
    /// ```
    pub fn poll_transmit_vectored(&mut self, chunks: &mut Vec<bytes::Bytes>) -> bool {
        let before = chunks.len();
        let more = self.core.poll_transmit_vectored(chunks);
        self.trace.sent(&chunks[before..]);
        more
    }

    /// What a driver holding the stream does to get output: takes what is
    /// ready into `chunks` ([`Layer::poll_transmit_vectored`]), marks the
    /// connection active when it took something, and routes what taking
    /// it caused (it can end a session: the last `<ok/>` left). Returns
    /// whether it took anything, and whether the session has more ready
    /// after it (it frames in batches).
    ///
    /// ```
    /// # use beep_proto::dispatch::{Action, Activity, Done, Driver, EndReason, Error, Layer};
    /// # struct Quiet;
    /// # impl Driver for Quiet {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// #     fn ended(&self, _: &EndReason) {}
    /// #     fn dispatch(&self, _: &Layer<(), ()>, actions: &mut Vec<Action>) { actions.clear() }
    /// # }
    /// use std::time::{Duration, Instant};
    /// let mut layer = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// let activity = Activity::new(Instant::now(), Duration::MAX);
    /// let mut chunks = Vec::new();
    /// assert_eq!(layer.take_output(&mut chunks, &activity, &Quiet, &mut Vec::new()), (true, false));
    /// assert!(chunks[0].starts_with(b"RPY 0 0 . 0 "), "the greeting");
    /// ```
    pub fn take_output<D>(
        &mut self,
        chunks: &mut Vec<bytes::Bytes>,
        activity: &super::Activity,
        driver: &D,
        actions: &mut Vec<Action>,
    ) -> (bool, bool)
    where
        D: Driver<Wait = T, Handlers = H>,
    {
        let took = self.poll_transmit_vectored(chunks);
        if took {
            // With the output taken: an idle timer that looks under the
            // same lock never sees a quiet session with stale activity.
            activity.touch(std::time::Instant::now);
        }
        self.route(driver, actions);
        (took, self.core.session().wants_transmit())
    }

    /// Where the wait for the peer's greeting stands: `Ok(true)` once it
    /// arrived, `Ok(false)` while it may still come, and once the
    /// connection ended without it, the error a connect call returns (a
    /// listener that greeted with an `<error>` is [`Error::Refused`]).
    ///
    /// ```
    /// use beep_proto::dispatch::{EndReason, Error, Layer};
    /// let mut layer: Layer<(), ()> = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// assert!(matches!(layer.greeting_state(), Ok(false)));
    /// layer.core.end(EndReason::Shutdown, &mut Vec::new());
    /// assert!(matches!(layer.greeting_state(), Err(Error::Closed(EndReason::Shutdown))));
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] or [`Error::Closed`], as above.
    pub fn greeting_state(&self) -> Result<bool, Error> {
        if self.core.session().peer_greeting().is_some() {
            return Ok(true);
        }
        match self.core.ended().cloned() {
            None => Ok(false),
            Some(EndReason::Refused { code, text }) => Err(Error::Refused { code, text }),
            Some(other) => Err(Error::Closed(other)),
        }
    }

    /// The peer's greeting (profiles, features, localize); empty until it
    /// arrived.
    ///
    /// ```
    /// let layer: beep_proto::dispatch::Layer<(), ()> =
    ///     beep_proto::dispatch::Layer::new(beep_proto::Session::initiator(Default::default()));
    /// assert!(layer.peer_greeting().profiles.is_empty());
    /// ```
    pub fn peer_greeting(&self) -> Greeting {
        let greeting = self.core.session().peer_greeting();
        greeting.cloned().unwrap_or_default()
    }

    /// The `serverName` bound to the session by its first accepted start.
    ///
    /// ```
    /// let layer: beep_proto::dispatch::Layer<(), ()> =
    ///     beep_proto::dispatch::Layer::new(beep_proto::Session::initiator(Default::default()));
    /// assert_eq!(layer.server_name(), None);
    /// ```
    pub fn server_name(&self) -> Option<String> {
        self.core.session().server_name().map(str::to_owned)
    }

    /// Puts `handler` in the slot `pick` chooses among channel `number`'s
    /// handlers; with `only_open`, only while the channel is open (a
    /// closed one keeps none). The handler replaced, or the one refused,
    /// is dropped after `guard` (the driver's lock on this layer) is let
    /// go: its drop may call back in.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use beep_proto::dispatch::Layer;
    /// // Handlers that are just a byte, in the slot of the Vec.
    /// #[derive(Default)]
    /// struct One(Option<u8>);
    /// impl beep_proto::dispatch::Handlers for One {
    ///     fn frames(&self) -> bool { false }
    /// }
    /// let layer: Mutex<Layer<(), One>> = Mutex::new(Layer::new(beep_proto::Session::initiator(Default::default())));
    /// Layer::install(layer.lock().unwrap(), 1, true, |h| &mut h.0, 7);
    /// assert!(layer.lock().unwrap().channels.get(&1).is_none(), "channel 1 is not open");
    /// Layer::install(layer.lock().unwrap(), 1, false, |h| &mut h.0, 7);
    /// assert_eq!(layer.lock().unwrap().channels[&1].0, Some(7));
    /// ```
    pub fn install<S>(
        mut guard: impl DerefMut<Target = Self>,
        number: u32,
        only_open: bool,
        pick: impl FnOnce(&mut H) -> &mut Option<S>,
        handler: S,
    ) {
        let closed =
            guard.core.ended().is_some() || guard.core.session().channel_profile(number).is_none();
        if only_open && closed {
            drop(guard);
            drop(handler);
            return;
        }
        let previous = pick(guard.channels.entry(number).or_default()).replace(handler);
        drop(guard);
        drop(previous);
    }

    /// Registers `f` to run (on the dispatcher) once the connection ends;
    /// if it has ended, `guard` (the driver's lock on this layer) is let
    /// go and `f` runs at once, in the calling thread.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use beep_proto::dispatch::{EndReason, Layer};
    /// let layer: Mutex<Layer<(), ()>> = Mutex::new(Layer::new(beep_proto::Session::initiator(Default::default())));
    /// layer.lock().unwrap().core.end(EndReason::Shutdown, &mut Vec::new());
    /// let ran = std::sync::Arc::new(Mutex::new(None));
    /// let seen = ran.clone();
    /// Layer::on_close(layer.lock().unwrap(), Box::new(move |reason| *seen.lock().unwrap() = Some(reason.clone())));
    /// assert_eq!(*ran.lock().unwrap(), Some(EndReason::Shutdown));
    /// ```
    pub fn on_close(mut guard: impl DerefMut<Target = Self>, f: CloseCallback) {
        match guard.core.ended().cloned() {
            Some(reason) => {
                drop(guard);
                f(&reason);
            }
            None => guard.on_close.push(f),
        }
    }

    /// Answers a start request with what the profile handlers decided:
    /// `chosen` is the offered profile we serve and its start handler's
    /// decision, or the refusal when we serve none of the offered profiles
    /// (see [`Profiles::decide_start`](super::Profiles::decide_start)), and
    /// `handlers` are what the channel gets if it opens (a channel whose
    /// handlers take frames delivers frames from the start). They are
    /// taken then, and whatever an earlier channel with this number left
    /// is put in their place: the driver drops `handlers` after its lock,
    /// since a drop may call back in. Returns true if the channel opened.
    ///
    /// ```
    /// use beep_proto::dispatch::{Layer, StartDecision};
    /// use beep_proto::{Config, Session, StartRequest, xml::Profile};
    /// let server = Session::listener(Config { profiles: vec!["p".into()], ..Config::default() });
    /// let mut layer: Layer<(), ()> = Layer::new(server);
    /// // A client asks for channel 1 with profile "p".
    /// let mut client = Session::initiator(Config::default());
    /// let mut greeting = Vec::new();
    /// layer.core.poll_transmit_vectored(&mut greeting);
    /// client.handle_input(&greeting.concat()).unwrap();
    /// client.open_channel(vec![Profile::new("p")], None).unwrap();
    /// while let Some(bytes) = client.poll_transmit() {
    ///     layer.core.handle_input(&bytes, &mut Vec::new());
    /// }
    /// let request = StartRequest { channel: 1, server_name: None, profiles: vec![Profile::new("p")] };
    /// let offer = Profile::new("p");
    /// let mut handlers = Some(());
    /// let opened = layer.answer_start(&request, Ok((&offer, StartDecision::Accept(None))), &mut handlers);
    /// assert!(opened.unwrap());
    /// assert!(handlers.is_none(), "taken, replacing none");
    /// assert!(layer.channels.contains_key(&1));
    /// ```
    pub fn answer_start(
        &mut self,
        request: &StartRequest,
        chosen: Result<(&Profile, StartDecision), (ReplyCode, String)>,
        handlers: &mut Option<H>,
    ) -> Result<bool, UsageError> {
        let frames = handlers.as_ref().is_some_and(H::frames);
        let profile = chosen.as_ref().ok().map(|(offer, _)| offer.uri.clone());
        let opened = self.core.answer_start(request, chosen, frames)?;
        if let (true, Some(profile)) = (opened, profile) {
            self.trace.opened(request.channel, &profile, false);
        }
        if opened && let Some(taken) = handlers.take() {
            *handlers = self.channels.insert(request.channel, taken);
        }
        Ok(opened)
    }

    /// True if `channel` delivers frames to its frame handler (a message
    /// routed whole before the switch then goes to it as one final frame).
    ///
    /// ```
    /// let layer: beep_proto::dispatch::Layer<(), ()> =
    ///     beep_proto::dispatch::Layer::new(beep_proto::Session::initiator(Default::default()));
    /// assert!(!layer.frames(1));
    /// ```
    pub fn frames(&self, channel: u32) -> bool {
        self.channels.get(&channel).is_some_and(H::frames)
    }

    /// Turns pending session events into results for waiters and
    /// actions for the dispatcher (see [`Layer::apply`]). Call after every
    /// session call.
    ///
    /// ```
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Quiet;
    /// # impl Driver for Quiet {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// #     fn ended(&self, _: &EndReason) {}
    /// #     fn dispatch(&self, _: &Layer<(), ()>, actions: &mut Vec<Action>) { actions.clear() }
    /// # }
    /// let mut layer = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// layer.core.poll_transmit_vectored(&mut Vec::new());
    /// layer.route(&Quiet, &mut Vec::new());
    /// assert!(layer.core.ended().is_none());
    /// ```
    pub fn route<D>(&mut self, driver: &D, actions: &mut Vec<Action>)
    where
        D: Driver<Wait = T, Handlers = H>,
    {
        let mut outcomes = std::mem::take(&mut self.scratch);
        self.core.route(&mut outcomes);
        self.apply_all(&mut outcomes, driver, actions);
        self.scratch = outcomes;
    }

    /// Feeds input from the peer, and applies what it caused.
    ///
    /// ```
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Quiet;
    /// # impl Driver for Quiet {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// #     fn ended(&self, _: &EndReason) {}
    /// #     fn dispatch(&self, _: &Layer<(), ()>, actions: &mut Vec<Action>) { actions.clear() }
    /// # }
    /// use beep_proto::{Config, Session};
    /// let mut server = Session::listener(Config { profiles: vec!["p".into()], ..Config::default() });
    /// let mut layer = Layer::new(Session::initiator(Config::default()));
    /// layer.input(&server.poll_transmit().unwrap(), &Quiet, &mut Vec::new());
    /// assert!(layer.core.session().peer_greeting().is_some());
    /// ```
    pub fn input<D>(&mut self, bytes: &[u8], driver: &D, actions: &mut Vec<Action>)
    where
        D: Driver<Wait = T, Handlers = H>,
    {
        let mut outcomes = std::mem::take(&mut self.scratch);
        self.trace.received(bytes);
        self.core.handle_input(bytes, &mut outcomes);
        self.apply_all(&mut outcomes, driver, actions);
        self.scratch = outcomes;
    }

    /// The peer closed its side: the session ends as the core decides (a
    /// release whose `<ok/>` is queued still completes; anything else is a
    /// lost connection), and what that caused is applied.
    ///
    /// ```
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Quiet;
    /// # impl Driver for Quiet {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// #     fn ended(&self, _: &EndReason) {}
    /// #     fn dispatch(&self, _: &Layer<(), ()>, actions: &mut Vec<Action>) { actions.clear() }
    /// # }
    /// let mut layer = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// layer.eof(&Quiet, &mut Vec::new());
    /// assert!(matches!(layer.core.ended(), Some(EndReason::Lost(_))));
    /// ```
    pub fn eof<D>(&mut self, driver: &D, actions: &mut Vec<Action>)
    where
        D: Driver<Wait = T, Handlers = H>,
    {
        let mut outcomes = std::mem::take(&mut self.scratch);
        self.core.handle_eof(&mut outcomes);
        self.apply_all(&mut outcomes, driver, actions);
        self.scratch = outcomes;
    }

    /// Ends the connection once (see [`Core::end`]): every waiter gets the
    /// reason, close callbacks and the end go to the dispatcher.
    ///
    /// ```
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Quiet;
    /// # impl Driver for Quiet {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// #     fn ended(&self, _: &EndReason) {}
    /// #     fn dispatch(&self, _: &Layer<(), ()>, actions: &mut Vec<Action>) { actions.clear() }
    /// # }
    /// let mut layer = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// layer.end(EndReason::Shutdown, &Quiet, &mut Vec::new());
    /// layer.end(EndReason::Released, &Quiet, &mut Vec::new());
    /// assert_eq!(layer.core.ended(), Some(&EndReason::Shutdown), "the first reason stays");
    /// ```
    pub fn end<D>(&mut self, reason: EndReason, driver: &D, actions: &mut Vec<Action>)
    where
        D: Driver<Wait = T, Handlers = H>,
    {
        let mut outcomes = std::mem::take(&mut self.scratch);
        self.core.end(reason, &mut outcomes);
        self.apply_all(&mut outcomes, driver, actions);
        self.scratch = outcomes;
    }

    /// Applies the core's outcomes: waiters are woken (callbacks queued),
    /// an opened channel gets default handlers, work for handlers becomes
    /// actions, a closed channel's handlers are dropped on the dispatcher,
    /// and the end queues the close callbacks, drops every channel's
    /// handlers, queues [`Action::Exit`] and tells the driver. Finally the
    /// actions go to [`Driver::dispatch`]. Runs no application code.
    ///
    /// ```
    /// # use beep_proto::dispatch::{Action, Done, Driver, EndReason, Error, Layer};
    /// # struct Keep;
    /// # impl Driver for Keep {
    /// #     type Wait = ();
    /// #     type Handlers = ();
    /// #     fn wake(&self, _: (), _: Result<Done, Error>) {}
    /// #     fn ended(&self, _: &EndReason) {}
    /// #     fn dispatch(&self, _: &Layer<(), ()>, _: &mut Vec<Action>) {}
    /// # }
    /// use beep_proto::dispatch::{CloseRequest, Outcome};
    /// use beep_proto::ReplyCode;
    /// let mut layer = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// let mut actions = Vec::new();
    /// let request = CloseRequest { channel: 1, code: ReplyCode::SUCCESS, lang: None, text: "bye".into() };
    /// layer.apply(vec![Outcome::CloseRequested(request)], &Keep, &mut actions);
    /// assert!(matches!(&actions[..], [Action::CloseRequested(r)] if r.channel == 1 && r.text == "bye"));
    /// ```
    pub fn apply<D>(
        &mut self,
        outcomes: Vec<Outcome<Notify<T>>>,
        driver: &D,
        actions: &mut Vec<Action>,
    ) where
        D: Driver<Wait = T, Handlers = H>,
    {
        let mut outcomes = outcomes;
        self.apply_all(&mut outcomes, driver, actions);
    }

    /// [`Layer::apply`], draining `outcomes` (left empty, its allocation
    /// kept for the next call).
    fn apply_all<D>(
        &mut self,
        outcomes: &mut Vec<Outcome<Notify<T>>>,
        driver: &D,
        actions: &mut Vec<Action>,
    ) where
        D: Driver<Wait = T, Handlers = H>,
    {
        if outcomes.is_empty() && actions.is_empty() {
            // Nothing happened: no call on the driver (see
            // `Driver::dispatch`), which would take its queue's lock.
            return;
        }
        for outcome in outcomes.drain(..) {
            match outcome {
                Outcome::Complete(notify, result) => {
                    if let Ok(Done::Opened { channel, profile }) = &result {
                        self.trace.opened(*channel, &profile.uri, true);
                        self.channels.entry(*channel).or_default();
                    }
                    let result = result.map_err(Error::from);
                    match notify {
                        Notify::Wait(wait) => driver.wake(wait, result),
                        Notify::Call(f) => actions.push(Action::Run(Box::new(move || f(result)))),
                    }
                }
                Outcome::Start(request) => actions.push(Action::Start(request)),
                Outcome::Message(m) => actions.push(Action::Message(m)),
                Outcome::Frame(f) => actions.push(Action::Frame(f)),
                Outcome::CloseRequested(request) => actions.push(Action::CloseRequested(request)),
                Outcome::TlsRequested(request) => actions.push(Action::TlsRequested(request)),
                Outcome::AuthRequested(request) => actions.push(Action::AuthRequested(request)),
                Outcome::TuningReset => {
                    // Every channel is gone (RFC 3080 3): their handlers
                    // go too, on the dispatcher, never under the lock.
                    let handlers = std::mem::take(&mut self.channels);
                    actions.push(Action::Run(Box::new(move || drop(handlers))));
                }
                Outcome::TlsActive(_) => {}
                Outcome::ChannelClosed(channel) => {
                    self.trace.closed(channel);
                    // Application closures are dropped on the dispatcher,
                    // never under the lock (a drop may call back in).
                    if let Some(handlers) = self.channels.remove(&channel) {
                        actions.push(Action::Run(Box::new(move || drop(handlers))));
                    }
                }
                Outcome::Ended(reason) => {
                    self.trace.ended(&reason);
                    for callback in self.on_close.drain(..) {
                        let reason = reason.clone();
                        actions.push(Action::Run(Box::new(move || callback(&reason))));
                    }
                    // Every channel is gone with the connection: its
                    // handlers go too (ending incoming queues), on the
                    // dispatcher, never under the lock.
                    let handlers = std::mem::take(&mut self.channels);
                    actions.push(Action::Run(Box::new(move || drop(handlers))));
                    actions.push(Action::Exit);
                    driver.ended(&reason);
                }
            }
        }
        // Handed over under the lock, so actions reach the dispatcher in
        // the order they were routed and nothing can follow its Exit.
        driver.dispatch(self, actions);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::config::Config;
    use crate::xml::Profile;

    /// Records what the layer hands it.
    #[derive(Default)]
    struct Record {
        woken: RefCell<Vec<Result<Done, Error>>>,
        ended: RefCell<Vec<EndReason>>,
        dispatched: RefCell<Vec<Action>>,
    }

    impl Handlers for Vec<u8> {
        fn frames(&self) -> bool {
            self.contains(&0)
        }
    }

    impl Driver for Record {
        type Wait = u8;
        type Handlers = Vec<u8>;
        fn wake(&self, _: u8, result: Result<Done, Error>) {
            self.woken.borrow_mut().push(result);
        }
        fn ended(&self, reason: &EndReason) {
            self.ended.borrow_mut().push(reason.clone());
        }
        fn dispatch(&self, _: &Layer<u8, Vec<u8>>, actions: &mut Vec<Action>) {
            self.dispatched.borrow_mut().append(actions);
        }
    }

    #[test]
    fn the_end_runs_callbacks_then_drops_handlers_then_exits_and_tells_the_driver_once() {
        let driver = Record::default();
        let mut layer: Layer<u8, Vec<u8>> = Layer::new(Session::initiator(Config::default()));
        layer.channels.insert(1, vec![1]);
        layer
            .core
            .open_channel(Profile::new("p"), None, Notify::Wait(7))
            .unwrap();
        let called = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = called.clone();
        Layer::on_close(
            &mut layer,
            Box::new(move |r| *seen.lock().unwrap() = Some(r.clone())),
        );
        layer.end(EndReason::Shutdown, &driver, &mut Vec::new());
        layer.end(EndReason::Released, &driver, &mut Vec::new());
        assert_eq!(*driver.ended.borrow(), vec![EndReason::Shutdown]);
        assert!(matches!(
            driver.woken.borrow()[..],
            [Err(Error::Closed(EndReason::Shutdown))]
        ));
        assert!(layer.channels.is_empty());
        let mut dispatched = driver.dispatched.take();
        assert!(matches!(
            dispatched[..],
            [Action::Run(_), Action::Run(_), Action::Exit]
        ));
        dispatched.truncate(1);
        let Some(Action::Run(callback)) = dispatched.pop() else {
            unreachable!()
        };
        assert!(called.lock().unwrap().is_none(), "not run under the lock");
        callback();
        assert_eq!(*called.lock().unwrap(), Some(EndReason::Shutdown));
    }

    #[test]
    fn an_opened_channel_gets_default_handlers_and_a_callback_runs_on_the_dispatcher() {
        let driver = Record::default();
        let mut layer: Layer<u8, Vec<u8>> = Layer::new(Session::initiator(Config::default()));
        let done = Ok(Done::Opened {
            channel: 3,
            profile: Profile::new("p"),
        });
        let called = std::sync::Arc::new(std::sync::Mutex::new(false));
        let seen = called.clone();
        let notify = Notify::Call(Box::new(move |r: Result<Done, Error>| {
            *seen.lock().unwrap() = r.is_ok();
        }));
        let mut actions = Vec::new();
        layer.apply(
            vec![Outcome::Complete(notify, done), Outcome::ChannelClosed(5)],
            &driver,
            &mut actions,
        );
        assert_eq!(layer.channels.get(&3), Some(&Vec::new()));
        assert!(driver.woken.borrow().is_empty());
        let mut dispatched = driver.dispatched.take();
        assert_eq!(dispatched.len(), 1, "a channel without handlers drops none");
        let Some(Action::Run(f)) = dispatched.pop() else {
            unreachable!()
        };
        f();
        assert!(*called.lock().unwrap());
        layer.apply(vec![Outcome::ChannelClosed(3)], &driver, &mut actions);
        assert!(layer.channels.is_empty());
        assert!(matches!(driver.dispatched.borrow()[..], [Action::Run(_)]));
    }
}
