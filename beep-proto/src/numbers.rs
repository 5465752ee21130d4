//! Message and answer numbers (RFC 3080 2.2.1.1).
//!
//! A BEEP frame names a channel, a message number and, on `ANS`, an answer
//! number, all three unsigned integers on the wire. As bare `u32`s they
//! would be interchangeable in code, so `send_rpy(msgno, channel, ..)`
//! would compile and fail at run time, or worse, reply to the wrong
//! message. [`MsgNo`] and [`AnsNo`] give each its own type: a raw `u32`
//! (such as a channel number) cannot be passed where one is expected. There
//! is deliberately no `From<u32>`; write `MsgNo(n)` where a number really
//! is a message number.
//!
//! Both print as the bare number, as on the wire, and convert back to
//! `u32` with `From`.

use core::fmt;

/// A message number: the `msgno` of a frame, which ties replies (RPY, ERR,
/// ANS, NUL) to the MSG they answer (RFC 3080 2.2.1.1).
///
/// Ranges over `0..=`[`MsgNo::MAX`]; a channel's next msgno wraps back to
/// 0 after it.
///
/// ```
/// use beep_proto::MsgNo;
/// let m = MsgNo(7);
/// assert_eq!(m.to_string(), "7");
/// assert_eq!(u32::from(m), 7);
/// assert!(MsgNo(0) < m && m <= MsgNo::MAX);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MsgNo(pub u32);

impl MsgNo {
    /// The largest message number, 2^31-1 (RFC 3080 2.2.1.1).
    ///
    /// ```
    /// use beep_proto::MsgNo;
    /// assert_eq!(MsgNo::MAX, MsgNo(2_147_483_647));
    /// ```
    pub const MAX: MsgNo = MsgNo(crate::frame::MAX_31BIT);
}

impl fmt::Display for MsgNo {
    /// The bare number, as on the wire.
    ///
    /// ```
    /// use beep_proto::MsgNo;
    /// assert_eq!(format!("MSG {}", MsgNo(3)), "MSG 3");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<MsgNo> for u32 {
    /// The number itself.
    ///
    /// ```
    /// use beep_proto::MsgNo;
    /// let n: u32 = MsgNo(5).into();
    /// assert_eq!(n, 5);
    /// ```
    fn from(msgno: MsgNo) -> u32 {
        msgno.0
    }
}

/// An answer number: the `ansno` of an `ANS` frame, which tells apart the
/// answers of one one-to-many reply (RFC 3080 2.2.1.1).
///
/// ```
/// use beep_proto::AnsNo;
/// let a = AnsNo(2);
/// assert_eq!(a.to_string(), "2");
/// assert_eq!(u32::from(a), 2);
/// assert_eq!(AnsNo::default(), AnsNo(0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AnsNo(pub u32);

impl fmt::Display for AnsNo {
    /// The bare number, as on the wire.
    ///
    /// ```
    /// use beep_proto::AnsNo;
    /// assert_eq!(format!("ANS {}", AnsNo(1)), "ANS 1");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<AnsNo> for u32 {
    /// The number itself.
    ///
    /// ```
    /// use beep_proto::AnsNo;
    /// let n: u32 = AnsNo(4).into();
    /// assert_eq!(n, 4);
    /// ```
    fn from(ansno: AnsNo) -> u32 {
        ansno.0
    }
}
