//! OpenAI's wire shapes as tierwise reads and writes them, below the run loop: the chat
//! completion request ([`ChatRequest`]: typed where tierwise reads it, kept as it came
//! everywhere else, duplicate keys refused), feedback injection into the next step's
//! prompt, and the SSE replay of answers tierwise produced itself.

pub mod feedback;
pub mod replay;
mod request;
pub mod responses;
pub mod strict;

pub use request::{ChatRequest, Content, Message, NotAString, Role, TextAt};
