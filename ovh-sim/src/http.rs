//! One HTTP exchange as the simulator sees it: the [`Request`] a handler reads, the [`Reply`] it
//! answers, and the [`RecordedRequest`] kept of both for the tests.

use std::time::SystemTime;

use serde_json::{Value, json};

/// One HTTP request, as the handlers see it.
#[derive(Debug)]
pub(crate) struct Request {
    /// Upper-case method.
    pub method: String,
    /// Path and query exactly as received (still percent-encoded).
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The raw body bytes (what the signature covers).
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `http://HOST` as the client addressed the server.
    pub fn origin(&self) -> String {
        format!("http://{}", self.header("host").unwrap_or("127.0.0.1"))
    }

    /// The URL the client signed: origin, path and query.
    pub fn full_url(&self) -> String {
        format!("{}{}", self.origin(), self.target)
    }

    /// The path part of the target (still encoded).
    pub fn raw_path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(&self.target, |(path, _)| path)
    }

    /// A decoded query parameter (`+` is a space, as python-ovh encodes it).
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true) == name).then(|| percent_decode(value, true))
        })
    }

    /// The body as a JSON object, or the error reply to send.
    pub fn json_body(&self) -> Result<serde_json::Map<String, Value>, Reply> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Reply::bad_request(
                "Invalid JSON body: an object is expected",
            )),
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); invalid escapes stay as
/// they are.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(hex, 16) {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(if byte == b'+' && plus_is_space {
            b' '
        } else {
            byte
        });
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub retry_after: Option<u64>,
    pub reason: Option<&'static str>,
}

impl Reply {
    #[allow(clippy::needless_pass_by_value)] // Callers build the value in place with json!.
    pub fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            body: value.to_string().into_bytes(),
            content_type: "application/json; charset=utf-8",
            retry_after: None,
            reason: None,
        }
    }

    /// 200 with a JSON value.
    pub fn ok(value: Value) -> Reply {
        Reply::json(200, value)
    }

    /// 200 `null`: what the API answers for `void` operations.
    pub fn void() -> Reply {
        Reply::json(200, Value::Null)
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            body: text.as_bytes().to_vec(),
            content_type: "text/plain; charset=utf-8",
            retry_after: None,
            reason: None,
        }
    }

    /// A business error: `{"class": …, "message": …}`.
    pub fn error(status: u16, class: &str, message: &str) -> Reply {
        Reply::json(status, json!({"class": class, "message": message}))
    }

    pub fn bad_request(message: &str) -> Reply {
        Reply::error(400, "Client::BadRequest", message)
    }

    pub fn not_found(message: &str) -> Reply {
        Reply::error(404, "Client::NotFound", message)
    }

    /// The 404 for an object that does not exist, in the API's words.
    pub fn no_object(field: &str, value: &str) -> Reply {
        Reply::not_found(&format!(
            "The requested object ({field} = {value}) does not exist"
        ))
    }

    /// The 409 of a busy legacy mailbox (reason phrase `ActionInProgress`).
    pub fn busy(address: &str) -> Reply {
        let mut reply = Reply::json(
            409,
            json!({"message": format!("This pop is already being processed: {address}, please try later")}),
        );
        reply.reason = Some("ActionInProgress");
        reply
    }
}

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`, `DELETE`.
    pub method: String,
    /// The path after the `/1.0` prefix, with its query as sent (still percent-encoded), e.g.
    /// `/email/exchange/org/service/svc/account?primaryEmailAddress=%25%40configureme.me`.
    pub path: String,
    /// The body as received.
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The body answered.
    pub response: String,
    /// When it was answered.
    pub at: SystemTime,
    /// `X-Ovh-Consumer`, when the request had one.
    pub consumer_key: Option<String>,
    /// The `X-Ovh-QueryID` answered.
    pub query_id: String,
}

impl RecordedRequest {
    /// Whether the request could change something (`POST`, `PUT`, `DELETE`).
    pub fn is_mutating(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "DELETE")
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(&self.path, |(path, _)| path)
    }
}
