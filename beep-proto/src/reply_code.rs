//! BEEP reply codes (RFC 3080 section 8).
//!
//! A reply code is the three-digit number carried by the `code` attribute of
//! the `<close>` and `<error>` elements. It is meaningful to programs; the
//! textual diagnostic next to it is for people. Codes follow the SMTP
//! convention: 2xx positive completion, 4xx transient failure, 5xx permanent
//! failure (RFC 3080 2.3.1.3).

use std::fmt;

/// A three-digit BEEP reply code (`100..=999`).
///
/// The constants are the codes RFC 3080 section 8 defines; any other
/// three-digit value is representable too, since peers may send codes this
/// crate does not know about.
///
/// ```
/// use beep_proto::reply_code::ReplyCode;
///
/// let code = ReplyCode::new(550).unwrap();
/// assert_eq!(code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN);
/// assert_eq!(code.to_string(), "550");
/// assert!(ReplyCode::new(55).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// 200: success.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::SUCCESS.get(), 200);
    /// ```
    pub const SUCCESS: Self = Self(200);
    /// 421: service not available.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::SERVICE_NOT_AVAILABLE.get(), 421);
    /// ```
    pub const SERVICE_NOT_AVAILABLE: Self = Self(421);
    /// 450: requested action not taken (e.g., lock already in use).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::ACTION_NOT_TAKEN.get(), 450);
    /// ```
    pub const ACTION_NOT_TAKEN: Self = Self(450);
    /// 451: requested action aborted (e.g., local error in processing).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::ACTION_ABORTED.get(), 451);
    /// ```
    pub const ACTION_ABORTED: Self = Self(451);
    /// 454: temporary authentication failure.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::TEMPORARY_AUTHENTICATION_FAILURE.get(), 454);
    /// ```
    pub const TEMPORARY_AUTHENTICATION_FAILURE: Self = Self(454);
    /// 500: general syntax error (e.g., poorly-formed XML).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::GENERAL_SYNTAX_ERROR.get(), 500);
    /// ```
    pub const GENERAL_SYNTAX_ERROR: Self = Self(500);
    /// 501: syntax error in parameters (e.g., non-valid XML).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::PARAMETER_SYNTAX_ERROR.get(), 501);
    /// ```
    pub const PARAMETER_SYNTAX_ERROR: Self = Self(501);
    /// 504: parameter not implemented.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::PARAMETER_NOT_IMPLEMENTED.get(), 504);
    /// ```
    pub const PARAMETER_NOT_IMPLEMENTED: Self = Self(504);
    /// 530: authentication required.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::AUTHENTICATION_REQUIRED.get(), 530);
    /// ```
    pub const AUTHENTICATION_REQUIRED: Self = Self(530);
    /// 534: authentication mechanism insufficient (e.g., too weak, sequence
    /// exhausted).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::MECHANISM_TOO_WEAK.get(), 534);
    /// ```
    pub const MECHANISM_TOO_WEAK: Self = Self(534);
    /// 535: authentication failure.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::AUTHENTICATION_FAILURE.get(), 535);
    /// ```
    pub const AUTHENTICATION_FAILURE: Self = Self(535);
    /// 537: action not authorized for user.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::ACTION_NOT_AUTHORISED.get(), 537);
    /// ```
    pub const ACTION_NOT_AUTHORISED: Self = Self(537);
    /// 538: authentication mechanism requires encryption.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::MECHANISM_REQUIRES_ENCRYPTION.get(), 538);
    /// ```
    pub const MECHANISM_REQUIRES_ENCRYPTION: Self = Self(538);
    /// 550: requested action not taken (e.g., no requested profiles are
    /// acceptable).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::REQUESTED_ACTION_NOT_TAKEN.get(), 550);
    /// ```
    pub const REQUESTED_ACTION_NOT_TAKEN: Self = Self(550);
    /// 553: parameter invalid.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::PARAMETER_INVALID.get(), 553);
    /// ```
    pub const PARAMETER_INVALID: Self = Self(553);
    /// 554: transaction failed (e.g., policy violation).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::TRANSACTION_FAILED.get(), 554);
    /// ```
    pub const TRANSACTION_FAILED: Self = Self(554);

    /// Every code defined by RFC 3080 section 8, in ascending order.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::ALL.len(), 16);
    /// assert!(ReplyCode::ALL.iter().all(|c| c.description() != "unknown"));
    /// ```
    pub const ALL: [Self; 16] = [
        Self::SUCCESS,
        Self::SERVICE_NOT_AVAILABLE,
        Self::ACTION_NOT_TAKEN,
        Self::ACTION_ABORTED,
        Self::TEMPORARY_AUTHENTICATION_FAILURE,
        Self::GENERAL_SYNTAX_ERROR,
        Self::PARAMETER_SYNTAX_ERROR,
        Self::PARAMETER_NOT_IMPLEMENTED,
        Self::AUTHENTICATION_REQUIRED,
        Self::MECHANISM_TOO_WEAK,
        Self::AUTHENTICATION_FAILURE,
        Self::ACTION_NOT_AUTHORISED,
        Self::MECHANISM_REQUIRES_ENCRYPTION,
        Self::REQUESTED_ACTION_NOT_TAKEN,
        Self::PARAMETER_INVALID,
        Self::TRANSACTION_FAILED,
    ];

    /// Makes a reply code from a number; `None` unless it has exactly three
    /// digits (`100..=999`).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::new(200), Some(ReplyCode::SUCCESS));
    /// assert_eq!(ReplyCode::new(999).map(ReplyCode::get), Some(999));
    /// assert_eq!(ReplyCode::new(99), None);
    /// assert_eq!(ReplyCode::new(1000), None);
    /// ```
    pub const fn new(code: u16) -> Option<Self> {
        if code >= 100 && code <= 999 {
            Some(Self(code))
        } else {
            None
        }
    }

    /// The numeric value, always in `100..=999`.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::AUTHENTICATION_FAILURE.get(), 535);
    /// ```
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The meaning RFC 3080 section 8 gives this code, or `"unknown"` for
    /// a code it does not define.
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert_eq!(ReplyCode::SUCCESS.description(), "success");
    /// assert_eq!(ReplyCode::new(299).unwrap().description(), "unknown");
    /// ```
    pub const fn description(self) -> &'static str {
        match self.0 {
            200 => "success",
            421 => "service not available",
            450 => "requested action not taken",
            451 => "requested action aborted",
            454 => "temporary authentication failure",
            500 => "general syntax error",
            501 => "syntax error in parameters",
            504 => "parameter not implemented",
            530 => "authentication required",
            534 => "authentication mechanism insufficient",
            535 => "authentication failure",
            537 => "action not authorized for user",
            538 => "authentication mechanism requires encryption",
            550 => "requested action not taken",
            553 => "parameter invalid",
            554 => "transaction failed",
            _ => "unknown",
        }
    }

    /// `true` for 2xx codes (positive completion).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert!(ReplyCode::SUCCESS.is_positive_completion());
    /// assert!(!ReplyCode::ACTION_ABORTED.is_positive_completion());
    /// ```
    pub const fn is_positive_completion(self) -> bool {
        self.0 / 100 == 2
    }

    /// `true` for 4xx codes (transient negative completion: trying again
    /// later may succeed).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert!(ReplyCode::SERVICE_NOT_AVAILABLE.is_transient_negative());
    /// assert!(!ReplyCode::TRANSACTION_FAILED.is_transient_negative());
    /// ```
    pub const fn is_transient_negative(self) -> bool {
        self.0 / 100 == 4
    }

    /// `true` for 5xx codes (permanent negative completion).
    ///
    /// ```
    /// # use beep_proto::reply_code::ReplyCode;
    /// assert!(ReplyCode::AUTHENTICATION_REQUIRED.is_permanent_negative());
    /// assert!(!ReplyCode::SUCCESS.is_permanent_negative());
    /// ```
    pub const fn is_permanent_negative(self) -> bool {
        self.0 / 100 == 5
    }
}

/// Writes the three-digit number, as it appears in a `code` attribute.
///
/// ```
/// # use beep_proto::reply_code::ReplyCode;
/// assert_eq!(format!("code='{}'", ReplyCode::TRANSACTION_FAILED), "code='554'");
/// ```
impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The numeric value of a reply code.
///
/// ```
/// # use beep_proto::reply_code::ReplyCode;
/// assert_eq!(u16::from(ReplyCode::SUCCESS), 200);
/// ```
impl From<ReplyCode> for u16 {
    fn from(code: ReplyCode) -> u16 {
        code.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3080 2.3.1.3: every RFC 3080 section 8 code, with its value and meaning.
    #[test]
    fn rfc3080_2_3_1_3_all_rfc_codes() {
        let expected: [(ReplyCode, u16, &str); 16] = [
            (ReplyCode::SUCCESS, 200, "success"),
            (
                ReplyCode::SERVICE_NOT_AVAILABLE,
                421,
                "service not available",
            ),
            (
                ReplyCode::ACTION_NOT_TAKEN,
                450,
                "requested action not taken",
            ),
            (ReplyCode::ACTION_ABORTED, 451, "requested action aborted"),
            (
                ReplyCode::TEMPORARY_AUTHENTICATION_FAILURE,
                454,
                "temporary authentication failure",
            ),
            (ReplyCode::GENERAL_SYNTAX_ERROR, 500, "general syntax error"),
            (
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                501,
                "syntax error in parameters",
            ),
            (
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                504,
                "parameter not implemented",
            ),
            (
                ReplyCode::AUTHENTICATION_REQUIRED,
                530,
                "authentication required",
            ),
            (
                ReplyCode::MECHANISM_TOO_WEAK,
                534,
                "authentication mechanism insufficient",
            ),
            (
                ReplyCode::AUTHENTICATION_FAILURE,
                535,
                "authentication failure",
            ),
            (
                ReplyCode::ACTION_NOT_AUTHORISED,
                537,
                "action not authorized for user",
            ),
            (
                ReplyCode::MECHANISM_REQUIRES_ENCRYPTION,
                538,
                "authentication mechanism requires encryption",
            ),
            (
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                550,
                "requested action not taken",
            ),
            (ReplyCode::PARAMETER_INVALID, 553, "parameter invalid"),
            (ReplyCode::TRANSACTION_FAILED, 554, "transaction failed"),
        ];
        for (i, (code, value, meaning)) in expected.into_iter().enumerate() {
            assert_eq!(code.get(), value);
            assert_eq!(ReplyCode::new(value), Some(code));
            assert_eq!(code.description(), meaning);
            assert_eq!(code.to_string(), value.to_string());
            assert_eq!(ReplyCode::ALL[i], code);
        }
    }

    /// RFC 3080 2.3.1.3: only three-digit numbers are reply codes.
    #[test]
    fn rfc3080_2_3_1_3_three_digits_only() {
        for v in [0u16, 1, 55, 99, 1000, 9999, u16::MAX] {
            assert_eq!(ReplyCode::new(v), None, "{v}");
        }
        for v in 100u16..=999 {
            let code = ReplyCode::new(v).unwrap();
            assert_eq!(code.get(), v);
            assert_eq!(code.to_string().len(), 3);
        }
    }

    #[test]
    fn classes() {
        let c = |v| ReplyCode::new(v).unwrap();
        assert!(c(250).is_positive_completion());
        assert!(c(499).is_transient_negative());
        assert!(c(500).is_permanent_negative());
        for v in [100u16, 300, 600, 999] {
            let code = c(v);
            assert!(!code.is_positive_completion());
            assert!(!code.is_transient_negative());
            assert!(!code.is_permanent_negative());
            assert_eq!(code.description(), "unknown");
        }
    }
}
