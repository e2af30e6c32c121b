//! The byte stream under an IMAP session ([`Transport`]): plain TCP or TLS over TCP, possibly
//! wrapped by [`super::trace`] and [`super::activity`]. Its own file so that the wrappers and
//! [`super::connect`], which applies them, do not import each other.

use std::fmt;

use tokio::io::{AsyncRead, AsyncWrite};

/// The byte stream under a session: plain TCP or TLS over TCP.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Transport for T {}
