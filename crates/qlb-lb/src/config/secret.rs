//! Secret octets (cluster secret, admin token) that never reach a log.

use std::fmt;

/// Secret octets. `Debug` shows only their length.
///
/// ```
/// use qlb_lb::config::Secret;
///
/// let secret = Secret::new(b"hunter2".to_vec());
/// assert_eq!(format!("{secret:?}"), "Secret(7 octets)");
/// assert_eq!(secret.as_bytes(), b"hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret octets.
    ///
    /// ```
    /// assert_eq!(qlb_lb::config::Secret::new(vec![1, 2]).as_bytes(), &[1, 2]);
    /// ```
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret octets.
    ///
    /// ```
    /// assert!(qlb_lb::config::Secret::new(vec![]).as_bytes().is_empty());
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} octets)", self.0.len())
    }
}
