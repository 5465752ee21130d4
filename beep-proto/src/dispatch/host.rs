//! The dispatcher's steps, written once for every driver: what happens to
//! each [`Action`] between the session and application code. A driver
//! implements [`Host`] (its lock, its channel handle, its registry) and
//! gets [`Host::step`]: starts are decided and answered, close requests
//! asked and answered, callbacks run, and a message or frame comes back as
//! a [`Delivery`] for the driver to run its way (a blocking call, or a
//! future it awaits) and to report with [`Host::handled`].
//!
//! So a new kind of work for application code (a TLS or an
//! authentication notification) is wired here, once, and both drivers
//! differ only in how they wait and where handlers run.

use std::ops::DerefMut;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::{
    Action, ChannelHandlers, CloseDecision, CloseRequest, Handled, Layer, MessageDone, Profiles,
    StartDecision,
};
use crate::event::{IncomingFrame, IncomingMessage, StartRequest};
use crate::xml::Profile;

/// A start handler: decides on a peer's `<start>` for one profile, with
/// the connection it came on and the offer of that profile.
pub type StartHook<Conn> = dyn Fn(&Conn, &StartRequest, &Profile) -> StartDecision + Send + Sync;

/// A channel-added handler: gets each channel of the profile the peer
/// opened, once our positive reply is queued.
pub type AddedHook<Ch> = dyn Fn(&Ch) + Send + Sync;

/// A close handler: decides on the peer's request to close a channel.
pub type CloseHook<Ch> = dyn Fn(&Ch, &CloseRequest) -> CloseDecision + Send + Sync;

/// Every hook one registered profile has: the message handler (`M`, a
/// driver's erased handler type), and optional start, channel-added,
/// close and frame (`F`) handlers. Both drivers' `ProfileHandler`s hold
/// one.
///
/// ```
/// use std::sync::Arc;
/// use beep_proto::dispatch::ProfileHooks;
/// type OnMessage = dyn Fn(&[u8]) + Send + Sync;
/// let hooks: ProfileHooks<(), (), OnMessage, OnMessage> = ProfileHooks::new(Arc::new(|_| {}));
/// let handlers = hooks.channel_handlers();
/// assert!(handlers.message.is_some() && handlers.frame.is_none());
/// ```
pub struct ProfileHooks<Conn, Ch, M: ?Sized, F: ?Sized> {
    /// Decides on starts (none: accept).
    pub start: Option<Arc<StartHook<Conn>>>,
    /// Runs with each channel the peer opened.
    pub added: Option<Arc<AddedHook<Ch>>>,
    /// Decides on the peer's close requests (none: agree).
    pub close: Option<Arc<CloseHook<Ch>>>,
    /// Handles the channel's messages.
    pub message: Arc<M>,
    /// Handles the channel's frames, when it delivers frames.
    pub frame: Option<Arc<F>>,
}

impl<Conn, Ch, M: ?Sized, F: ?Sized> ProfileHooks<Conn, Ch, M, F> {
    /// Hooks with only a message handler.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use beep_proto::dispatch::ProfileHooks;
    /// let hooks: ProfileHooks<(), (), dyn Fn() + Send + Sync, dyn Fn() + Send + Sync> =
    ///     ProfileHooks::new(Arc::new(|| {}));
    /// assert!(hooks.start.is_none() && hooks.close.is_none());
    /// ```
    pub fn new(message: Arc<M>) -> Self {
        ProfileHooks {
            start: None,
            added: None,
            close: None,
            message,
            frame: None,
        }
    }

    /// The handlers a channel started for this profile gets.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use beep_proto::dispatch::{Handlers, ProfileHooks};
    /// type OnItem = dyn Fn() + Send + Sync;
    /// let mut hooks: ProfileHooks<(), (), OnItem, OnItem> = ProfileHooks::new(Arc::new(|| {}));
    /// hooks.frame = Some(Arc::new(|| {}));
    /// assert!(hooks.channel_handlers().frames());
    /// ```
    pub fn channel_handlers(&self) -> ChannelHandlers<M, F, CloseHook<Ch>> {
        ChannelHandlers::new(self.message.clone(), self.close.clone(), self.frame.clone())
    }
}

impl<Conn, Ch, M: ?Sized, F: ?Sized> Clone for ProfileHooks<Conn, Ch, M, F> {
    fn clone(&self) -> Self {
        ProfileHooks {
            start: self.start.clone(),
            added: self.added.clone(),
            close: self.close.clone(),
            message: self.message.clone(),
            frame: self.frame.clone(),
        }
    }
}

impl<Conn, Ch, M: ?Sized, F: ?Sized> std::fmt::Debug for ProfileHooks<Conn, Ch, M, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileHooks")
            .field("start", &self.start.is_some())
            .field("added", &self.added.is_some())
            .field("close", &self.close.is_some())
            .field("frame", &self.frame.is_some())
            .finish_non_exhaustive()
    }
}

/// The handlers of one open channel, for host `H`.
pub type HostHandlers<H> =
    ChannelHandlers<<H as Host>::Message, <H as Host>::Frame, CloseHook<<H as Host>::Channel>>;

/// The state behind host `H`'s lock.
pub type HostLayer<H> = Layer<<H as Host>::Wait, HostHandlers<H>>;

/// One registered profile's hooks, for host `H`.
pub type HostProfile<H> = ProfileHooks<
    <H as Host>::Connection,
    <H as Host>::Channel,
    <H as Host>::Message,
    <H as Host>::Frame,
>;

/// A message or frame for application code: the driver runs `handler`
/// with `channel` and `item` (catching a panic as [`Handled::Failed`]),
/// then reports it with [`Host::handled`], which gives the window back
/// and answers a MSG the handler left unanswered.
pub struct Delivery<Ch, T, F: ?Sized> {
    /// The channel's handler.
    pub handler: Arc<F>,
    /// The driver's handle on the channel.
    pub channel: Ch,
    /// The message or frame.
    pub item: T,
    /// What [`Host::handled`] reports.
    pub done: MessageDone,
}

/// What [`Host::step`] leaves to the driver.
pub enum Step<H: Host> {
    /// The action is done.
    Done,
    /// The connection ended: the dispatcher stops.
    Exit,
    /// A whole message for the channel's message handler.
    Message(Delivery<H::Channel, IncomingMessage, H::Message>),
    /// A frame for the channel's frame handler.
    Frame(Delivery<H::Channel, IncomingFrame, H::Frame>),
}

impl<H: Host> std::fmt::Debug for Step<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Done => f.write_str("Done"),
            Step::Exit => f.write_str("Exit"),
            Step::Message(d) => f.debug_tuple("Message").field(&d.done).finish(),
            Step::Frame(d) => f.debug_tuple("Frame").field(&d.done).finish(),
        }
    }
}

/// A driver's connection, as its dispatcher sees it. Implemented by a
/// driver type private to it; applications never see it.
///
/// ```
/// use std::sync::{Arc, Mutex, MutexGuard};
/// use beep_proto::dispatch::{Handled, Host, HostLayer, HostProfile, Layer, Profiles, Step};
/// use beep_proto::{IncomingFrame, IncomingMessage, Session};
///
/// type OnMessage = dyn Fn(&u32, IncomingMessage) + Send + Sync;
/// type OnFrame = dyn Fn(&u32, IncomingFrame) + Send + Sync;
/// // A host whose channel handle is just the channel number.
/// struct Plain {
///     layer: Mutex<HostLayer<Plain>>,
///     profiles: Profiles<HostProfile<Plain>>,
/// }
/// impl Host for Plain {
///     type Connection = Plain;
///     type Channel = u32;
///     type Message = OnMessage;
///     type Frame = OnFrame;
///     type Wait = ();
///     type Guard<'a> = MutexGuard<'a, HostLayer<Plain>>;
///     fn connection(&self) -> &Plain { self }
///     fn channel(&self, number: u32) -> u32 { number }
///     fn lock(&self) -> Self::Guard<'_> { self.layer.lock().unwrap() }
///     fn update<R>(&self, f: impl FnOnce(&mut HostLayer<Plain>) -> R) -> Option<R> {
///         Some(f(&mut self.lock())) // a driver also routes and flushes here
///     }
///     fn profiles(&self) -> &Profiles<HostProfile<Plain>> { &self.profiles }
/// }
///
/// let host = Plain {
///     layer: Mutex::new(Layer::new(Session::listener(Default::default()))),
///     profiles: Profiles::default(),
/// };
/// // A dispatcher loop: everything but running the handler is shared.
/// # let actions: Vec<beep_proto::dispatch::Action> = vec![];
/// for action in actions {
///     match host.step(action) {
///         Step::Done => {}
///         Step::Exit => break,
///         Step::Message(d) => {
///             (d.handler)(&d.channel, d.item);
///             host.handled(&d.done, Handled::Ran);
///         }
///         Step::Frame(d) => {
///             (d.handler)(&d.channel, d.item);
///             host.handled(&d.done, Handled::Ran);
///         }
///     }
/// }
/// ```
pub trait Host: Sized {
    /// What start hooks, the TLS acceptor and the auth handler get: the
    /// driver's public connection handle (`'static`: the latter two see
    /// it as `&dyn Any`).
    type Connection: 'static;
    /// The driver's public channel handle.
    type Channel: 'static;
    /// The driver's erased message handler.
    type Message: ?Sized + Send + Sync + 'static;
    /// The driver's erased frame handler.
    type Frame: ?Sized + Send + Sync + 'static;
    /// How the driver wakes a waiting caller (see [`Driver::Wait`]).
    ///
    /// [`Driver::Wait`]: super::Driver::Wait
    type Wait;
    /// The locked layer.
    type Guard<'a>: DerefMut<Target = HostLayer<Self>>
    where
        Self: 'a;

    /// The connection handle start hooks, the TLS acceptor and the auth
    /// handler get.
    fn connection(&self) -> &Self::Connection;

    /// A handle on channel `number`, for handlers.
    fn channel(&self, number: u32) -> Self::Channel;

    /// Locks the layer, to read it (nothing it produces is routed).
    fn lock(&self) -> Self::Guard<'_>;

    /// Runs `f` on the locked layer, then routes what the session produced
    /// and gets its output on its way; `None` (and `f` not run) once the
    /// connection has ended.
    fn update<R>(&self, f: impl FnOnce(&mut HostLayer<Self>) -> R) -> Option<R>;

    /// The profiles this connection serves.
    fn profiles(&self) -> &Profiles<HostProfile<Self>>;

    /// Does `action`, but for running a message or frame handler, which
    /// it hands back. Application code it runs (start, channel-added and
    /// close hooks, callbacks) runs outside the lock, and a panic in it is
    /// confined: a start hook's refuses with 554, a close hook's agrees.
    fn step(&self, action: Action) -> Step<Self> {
        match action {
            Action::Exit => return Step::Exit,
            Action::Run(f) => {
                let _ = catch_unwind(AssertUnwindSafe(f));
            }
            Action::Start(request) => self.answer_start(&request),
            Action::Message(m) => return self.deliver(m),
            Action::Frame(f) => return self.deliver_frame(f),
            Action::CloseRequested(request) => self.answer_close(request),
            Action::TlsRequested(request) => self.answer_tls(&request),
            Action::AuthRequested(request) => self.answer_auth(&request),
        }
        Step::Done
    }

    /// Asks the profiles' [`TlsAcceptor`](super::TlsAcceptor) (outside the
    /// lock, with [`Host::connection`]) for the certificate to answer a
    /// TLS request with; refuses when TLS is not offered or the acceptor
    /// says no (or panics).
    fn answer_tls(&self, request: &crate::event::TlsRequest) {
        let connection: &dyn std::any::Any = self.connection();
        let server = self
            .profiles()
            .tls()
            .and_then(|a| a.choose_for(connection, request));
        self.update(|layer| layer.core.answer_tls(request.channel, server));
    }

    /// Picks the first offered profile we serve and asks its start hook
    /// (outside the lock); refuses when none is served, as the profiles'
    /// unknown-profile hook says. Once the channel is open on our side,
    /// its reply queued, the channel-added hook gets it.
    fn answer_start(&self, request: &StartRequest) {
        let chosen = self.profiles().decide_start_with(request, |hooks, offer| {
            let start = hooks.start.as_ref()?;
            Some(start(self.connection(), request, offer))
        });
        let mut handlers = chosen
            .as_ref()
            .ok()
            .map(|(_, hooks, _)| hooks.channel_handlers());
        let added = chosen
            .as_ref()
            .ok()
            .and_then(|(_, hooks, _)| hooks.added.clone());
        let answer = chosen.map(|(offer, _, decision)| (offer, decision));
        let opened = self.update(|layer| layer.answer_start(request, answer, &mut handlers));
        // The handlers not taken, or left from an earlier channel with this
        // number, are dropped outside the lock: a drop may call back in.
        drop(handlers);
        if let (Some(Ok(true)), Some(added)) = (opened, added) {
            let channel = self.channel(request.channel);
            let _ = catch_unwind(AssertUnwindSafe(|| added(&channel)));
        }
    }

    /// Asks the channel's close hook (set by its profile, or on a channel
    /// we opened) about the peer's close request, and answers.
    fn answer_close(&self, request: CloseRequest) {
        let number = request.channel;
        let close = self
            .lock()
            .channels
            .get(&number)
            .and_then(|h| h.close.clone());
        let decision = request.decide(close.map(|close| {
            let channel = self.channel(number);
            move |r: &CloseRequest| close(&channel, r)
        }));
        self.update(|layer| layer.core.answer_close(number, decision));
    }

    /// Asks the profiles' auth handler (outside the lock, with
    /// [`Host::connection`]) about the peer's authentication and answers;
    /// without one, or when it panics, the answer is a denial (the peer
    /// learns only "authentication failure").
    fn answer_auth(&self, request: &crate::sasl::AuthRequest) {
        let answer = self.profiles().decide_auth(self.connection(), request);
        self.update(|layer| layer.core.answer_auth(request.channel, answer));
    }

    /// A message for its channel's handler: the message handler's, or the
    /// frame handler's as one final frame when the channel switched to
    /// frames after the message was routed whole. Without a handler the
    /// message is reported at once ([`Handled::NoHandler`]).
    fn deliver(&self, m: IncomingMessage) -> Step<Self> {
        let done = MessageDone::of(&m);
        let (message, frame) = {
            let layer = self.lock();
            let framed = layer.frames(done.channel);
            let handlers = layer.channels.get(&done.channel);
            match handlers {
                Some(h) if framed => (None, h.frame.clone()),
                Some(h) => (h.message.clone(), None),
                None => (None, None),
            }
        };
        let channel = || self.channel(done.channel);
        match (message, frame) {
            (Some(handler), _) => Step::Message(Delivery {
                handler,
                channel: channel(),
                item: m,
                done,
            }),
            (None, Some(handler)) => Step::Frame(Delivery {
                handler,
                channel: channel(),
                item: m.into_frame(),
                done,
            }),
            (None, None) => {
                self.handled(&done, Handled::NoHandler);
                Step::Done
            }
        }
    }

    /// Reports how a [`Delivery`]'s handler ended: gives the window back,
    /// and answers a MSG it left unanswered (with an ERR after an error
    /// or a panic; a panic also closes the channel).
    fn handled(&self, done: &MessageDone, handled: Handled) {
        self.update(|layer| layer.core.message_handled(done, handled));
    }

    /// A frame for its channel's frame handler, like [`Host::deliver`].
    fn deliver_frame(&self, f: IncomingFrame) -> Step<Self> {
        let done = MessageDone::of_frame(&f);
        let handler = self
            .lock()
            .channels
            .get(&done.channel)
            .and_then(|h| h.frame.clone());
        match handler {
            Some(handler) => Step::Frame(Delivery {
                handler,
                channel: self.channel(done.channel),
                item: f,
                done,
            }),
            None => {
                self.handled(&done, Handled::NoHandler);
                Step::Done
            }
        }
    }
}
