//! The syntax stage of WAMP v2 decoding: one text frame to one [`Message`], every element checked for its
//! JSON type and named in the error.

use serde_json::Value;

use super::{code, Dict, Message};
use crate::wamp::id::{self, Id};
use crate::wamp::{DecodeError, Serializer};

/// Reads typed elements out of a message array, naming the field on error.
struct Fields<'a> {
    message: &'static str,
    items: &'a [Value],
}

impl<'a> Fields<'a> {
    fn bad(&self, index: usize, field: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::BadField { message: self.message, index, field, expected }
    }

    fn length(&self, min: usize, max: usize, expected: &'static str) -> Result<(), DecodeError> {
        let got = self.items.len();
        if got < min || got > max {
            return Err(DecodeError::WrongLength { message: self.message, got, expected });
        }
        Ok(())
    }

    fn id(&self, index: usize, field: &'static str) -> Result<Id, DecodeError> {
        self.items[index]
            .as_u64()
            .filter(|v| id::is_valid(*v))
            .ok_or_else(|| self.bad(index, field, "an integer id in [1, 2^53]"))
    }

    fn int(&self, index: usize, field: &'static str) -> Result<u64, DecodeError> {
        self.items[index].as_u64().ok_or_else(|| self.bad(index, field, "a non-negative integer"))
    }

    fn string(&self, index: usize, field: &'static str) -> Result<String, DecodeError> {
        self.items[index].as_str().map(str::to_owned).ok_or_else(|| self.bad(index, field, "a string"))
    }

    fn dict(&self, index: usize, field: &'static str) -> Result<Dict, DecodeError> {
        self.items[index].as_object().cloned().ok_or_else(|| self.bad(index, field, "a dictionary"))
    }

    fn opt_list(&self, index: usize) -> Result<Option<Vec<Value>>, DecodeError> {
        match self.items.get(index) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a.clone())),
            Some(_) => Err(self.bad(index, "Arguments", "a list")),
        }
    }

    fn opt_dict(&self, index: usize) -> Result<Option<Dict>, DecodeError> {
        match self.items.get(index) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o.clone())),
            Some(_) => Err(self.bad(index, "ArgumentsKw", "a dictionary")),
        }
    }
}

pub(super) fn name_of(code: u64) -> Option<&'static str> {
    Some(match code {
        code::HELLO => "HELLO",
        code::WELCOME => "WELCOME",
        code::ABORT => "ABORT",
        code::CHALLENGE => "CHALLENGE",
        code::AUTHENTICATE => "AUTHENTICATE",
        code::GOODBYE => "GOODBYE",
        code::ERROR => "ERROR",
        code::PUBLISH => "PUBLISH",
        code::PUBLISHED => "PUBLISHED",
        code::SUBSCRIBE => "SUBSCRIBE",
        code::SUBSCRIBED => "SUBSCRIBED",
        code::UNSUBSCRIBE => "UNSUBSCRIBE",
        code::UNSUBSCRIBED => "UNSUBSCRIBED",
        code::EVENT => "EVENT",
        code::CALL => "CALL",
        code::CANCEL => "CANCEL",
        code::RESULT => "RESULT",
        code::REGISTER => "REGISTER",
        code::REGISTERED => "REGISTERED",
        code::UNREGISTER => "UNREGISTER",
        code::UNREGISTERED => "UNREGISTERED",
        code::INVOCATION => "INVOCATION",
        code::INTERRUPT => "INTERRUPT",
        code::YIELD => "YIELD",
        _ => return None,
    })
}

impl Message {
    /// Syntax stage: one text frame to one message. Every element is checked for its JSON type; URIs and
    /// options are checked later by the router, so it can answer with a request-specific ERROR.
    pub fn decode(text: &str) -> Result<Message, DecodeError> {
        Message::from_items(crate::wamp::parse_array(text)?)
    }

    /// Syntax stage for a binary frame: its serializer reads the bytes into the value tree a JSON frame parses
    /// into, and the same checks follow.
    pub fn decode_binary(serializer: Serializer, bytes: &[u8]) -> Result<Message, DecodeError> {
        match serializer.decode(bytes).map_err(|e| DecodeError::Serial(e.to_string()))? {
            Value::Array(items) if !items.is_empty() => Message::from_items(items),
            _ => Err(DecodeError::NotAnArray),
        }
    }

    fn from_items(items: Vec<Value>) -> Result<Message, DecodeError> {
        let code = items[0].as_u64().ok_or(DecodeError::BadCode)?;
        let name = name_of(code).ok_or(DecodeError::UnknownCode(code))?;
        let f = Fields { message: name, items: &items };
        Ok(match code {
            code::HELLO => {
                f.length(3, 3, "3")?;
                Message::Hello { realm: f.string(1, "Realm")?, details: f.dict(2, "Details")? }
            }
            code::WELCOME => {
                f.length(3, 3, "3")?;
                Message::Welcome { session: f.id(1, "Session")?, details: f.dict(2, "Details")? }
            }
            code::ABORT | code::GOODBYE => {
                f.length(3, 3, "3")?;
                let details = f.dict(1, "Details")?;
                let reason = f.string(2, "Reason")?;
                if code == code::ABORT {
                    Message::Abort { details, reason }
                } else {
                    Message::Goodbye { details, reason }
                }
            }
            code::CHALLENGE => {
                f.length(3, 3, "3")?;
                Message::Challenge { method: f.string(1, "AuthMethod")?, extra: f.dict(2, "Extra")? }
            }
            code::AUTHENTICATE => {
                f.length(3, 3, "3")?;
                Message::Authenticate { signature: f.string(1, "Signature")?, extra: f.dict(2, "Extra")? }
            }
            code::ERROR => {
                f.length(5, 7, "5 to 7")?;
                Message::Error {
                    request_type: f.int(1, "REQUEST.Type")?,
                    request: f.id(2, "REQUEST.Request")?,
                    details: f.dict(3, "Details")?,
                    error: f.string(4, "Error")?,
                    args: f.opt_list(5)?,
                    kwargs: f.opt_dict(6)?,
                }
            }
            code::PUBLISH => {
                f.length(4, 6, "4 to 6")?;
                Message::Publish {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    topic: f.string(3, "Topic")?,
                    args: f.opt_list(4)?,
                    kwargs: f.opt_dict(5)?,
                }
            }
            code::PUBLISHED => {
                f.length(3, 3, "3")?;
                Message::Published { request: f.id(1, "Request")?, publication: f.id(2, "Publication")? }
            }
            code::SUBSCRIBE => {
                f.length(4, 4, "4")?;
                Message::Subscribe {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    topic: f.string(3, "Topic")?,
                }
            }
            code::SUBSCRIBED => {
                f.length(3, 3, "3")?;
                Message::Subscribed { request: f.id(1, "Request")?, subscription: f.id(2, "Subscription")? }
            }
            code::UNSUBSCRIBE => {
                f.length(3, 3, "3")?;
                Message::Unsubscribe { request: f.id(1, "Request")?, subscription: f.id(2, "Subscription")? }
            }
            code::UNSUBSCRIBED => {
                f.length(2, 3, "2 or 3")?;
                Message::Unsubscribed { request: f.id(1, "Request")? }
            }
            code::EVENT => {
                f.length(4, 6, "4 to 6")?;
                Message::Event {
                    subscription: f.id(1, "Subscription")?,
                    publication: f.id(2, "Publication")?,
                    details: f.dict(3, "Details")?,
                    args: f.opt_list(4)?,
                    kwargs: f.opt_dict(5)?,
                }
            }
            code::CALL => {
                f.length(4, 6, "4 to 6")?;
                Message::Call {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    procedure: f.string(3, "Procedure")?,
                    args: f.opt_list(4)?,
                    kwargs: f.opt_dict(5)?,
                }
            }
            code::RESULT => {
                f.length(3, 5, "3 to 5")?;
                Message::Result {
                    request: f.id(1, "Request")?,
                    details: f.dict(2, "Details")?,
                    args: f.opt_list(3)?,
                    kwargs: f.opt_dict(4)?,
                }
            }
            code::REGISTER => {
                f.length(4, 4, "4")?;
                Message::Register {
                    request: f.id(1, "Request")?,
                    options: f.dict(2, "Options")?,
                    procedure: f.string(3, "Procedure")?,
                }
            }
            code::REGISTERED => {
                f.length(3, 3, "3")?;
                Message::Registered { request: f.id(1, "Request")?, registration: f.id(2, "Registration")? }
            }
            code::UNREGISTER => {
                f.length(3, 3, "3")?;
                Message::Unregister { request: f.id(1, "Request")?, registration: f.id(2, "Registration")? }
            }
            code::UNREGISTERED => {
                f.length(2, 3, "2 or 3")?;
                Message::Unregistered { request: f.id(1, "Request")? }
            }
            _ => {
                // CANCEL, INVOCATION, INTERRUPT, YIELD: request id where there is one.
                let request = items.get(1).and_then(Value::as_u64).filter(|v| id::is_valid(*v));
                Message::Unimplemented { code, name, request }
            }
        })
    }
}
