//! A deterministic test mailbox: [`Corpus::small`] (150 messages) or [`Corpus::with_count`]
//! builds folders and messages from a fixed seed, [`Corpus::seed`] APPENDs them to a server and
//! [`Corpus::expected`] is the [`Multiset`] a snapshot of that server must then equal.
//!
//! What it contains, because a migration has to get each right: nested folders
//! (`Work/Projects/2024`), non-ASCII names (`Reçus`, `Документы`, `日本語/サブフォルダ`) and a name
//! with `&` (both sent in modified UTF-7), the special-use folders, empty folders, flags and
//! keywords (`$Label1`, `project-x`), INTERNALDATEs over ten years in several time zones, a
//! message without Message-ID, two different messages sharing a Message-ID, two byte-identical
//! copies in one folder, RFC 2047 headers, 8-bit UTF-8 bodies, base64 attachments, CRLF line
//! endings throughout, and optionally a 30 MB message ([`Corpus::with_large_message`]).
//!
//! Everything is a pure function of the count and the seed: the same corpus every run.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::dovecot::Dovecot;
use super::imap::{block_on, connect, encode_folder};
use super::mailbox::{MessageKey, Multiset};

/// The special-use folders every corpus has, with their attribute.
pub const SPECIAL_FOLDERS: [(&str, &str); 5] = [
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// Every folder, parents before children (IMAP servers differ on creating parents implicitly).
const FOLDERS: [&str; 16] = [
    "INBOX",
    "Sent",
    "Drafts",
    "Trash",
    "Junk",
    "Archive",
    "Archive/2019",
    "Work",
    "Work/Projects",
    "Work/Projects/2024",
    "Work/Empty & odd",
    "Reçus",
    "Документы",
    "日本語",
    "日本語/サブフォルダ",
    "Empty",
];

/// Folders left without messages.
const EMPTY_FOLDERS: [&str; 3] = ["Archive/2019", "Work/Empty & odd", "Empty"];

/// The size of the optional large message's attachment, before base64.
const LARGE_ATTACHMENT_BYTES: usize = 22 * 1024 * 1024;

/// One message to APPEND.
#[derive(Debug, Clone)]
pub struct Message {
    /// UTF-8 folder name.
    pub folder: String,
    /// The exact bytes, CRLF line endings.
    pub bytes: Vec<u8>,
    /// Flags and keywords as written in IMAP.
    pub flags: Vec<String>,
    /// INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
    /// The time zone the INTERNALDATE is written in, minutes east of UTC.
    pub utc_offset_minutes: i32,
}

/// A generated mailbox; see the module doc.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Every folder (UTF-8), `INBOX` first, parents before children.
    pub folders: Vec<String>,
    /// Every message in APPEND order.
    pub messages: Vec<Message>,
}

impl Corpus {
    /// About 150 messages: the everyday corpus.
    pub fn small() -> Corpus {
        Corpus::with_count(150)
    }

    /// `count` messages (at least the 5 special cases) from the default seed.
    pub fn with_count(count: usize) -> Corpus {
        Corpus::with_seed(count, 0x6d61_696c_706c_616e)
    }

    /// `count` messages (at least the 5 special cases) from `seed`.
    pub fn with_seed(count: usize, seed: u64) -> Corpus {
        let mut rng = XorShift::new(seed);
        let folders: Vec<String> = FOLDERS.iter().map(|&f| f.to_owned()).collect();
        let full: Vec<&str> = FOLDERS
            .iter()
            .copied()
            .filter(|f| !EMPTY_FOLDERS.contains(f))
            .collect();
        let mut messages = Vec::with_capacity(count.max(5));

        // The special cases first, so they exist at every size.
        let no_id = build_message(&mut rng, 0, None);
        messages.push(message_in(&mut rng, "INBOX", no_id));
        let shared_id = Some("<shared-id@corpus.mailplan.test>".to_owned());
        for n in 1..=2 {
            let bytes = build_message(&mut rng, n, shared_id.clone());
            messages.push(message_in(&mut rng, "INBOX", bytes));
        }
        let twin = build_message(&mut rng, 3, Some(message_id(3)));
        let twin = message_in(&mut rng, "Work/Projects", twin);
        messages.push(twin.clone());
        messages.push(twin);

        for n in messages.len()..count {
            // INBOX gets about a third of the mail, as in real mailboxes.
            let folder = if rng.below(3) == 0 {
                "INBOX"
            } else {
                full[rng.below(full.len())]
            };
            let bytes = build_message(&mut rng, n, Some(message_id(n)));
            messages.push(message_in(&mut rng, folder, bytes));
        }
        Corpus { folders, messages }
    }

    /// `count` new messages for INBOX, numbered from `first`, with Message-IDs of their own (no
    /// two calls with other numbers, nor another corpus, share one): mail that arrives meanwhile.
    pub fn arrivals(first: usize, count: usize) -> Corpus {
        let mut rng = XorShift::new(0xa11e_0000 + first as u64);
        let messages = (first..first + count)
            .map(|n| {
                let id = format!("<arrival-{n}@corpus.mailplan.test>");
                let bytes = build_message(&mut rng, n, Some(id));
                message_in(&mut rng, "INBOX", bytes)
            })
            .collect();
        Corpus {
            folders: vec!["INBOX".to_owned()],
            messages,
        }
    }

    /// Adds a message of about 30 MB (a base64 attachment) to INBOX.
    #[must_use]
    pub fn with_large_message(mut self) -> Corpus {
        let mut rng = XorShift::new(30);
        let mut bytes = Vec::with_capacity(LARGE_ATTACHMENT_BYTES * 4 / 3 + 4096);
        bytes.extend_from_slice(
            b"From: Large Sender <large@example.org>\r\n\
              To: alice@example.org\r\n\
              Subject: a 30 MB attachment\r\n\
              Date: Mon, 03 Jun 2024 10:00:00 +0200\r\n\
              Message-ID: <large@corpus.mailplan.test>\r\n\
              MIME-Version: 1.0\r\n\
              Content-Type: multipart/mixed; boundary=\"large-boundary\"\r\n\
              \r\n\
              --large-boundary\r\n\
              Content-Type: text/plain; charset=utf-8\r\n\
              \r\n\
              See the attachment.\r\n\
              --large-boundary\r\n\
              Content-Type: application/octet-stream; name=\"large.bin\"\r\n\
              Content-Transfer-Encoding: base64\r\n\
              Content-Disposition: attachment; filename=\"large.bin\"\r\n\
              \r\n",
        );
        let attachment: Vec<u8> = (0..LARGE_ATTACHMENT_BYTES / 8)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect();
        base64_lines(&attachment, &mut bytes);
        bytes.extend_from_slice(b"--large-boundary--\r\n");
        self.messages.push(Message {
            folder: "INBOX".to_owned(),
            bytes,
            flags: vec!["\\Seen".to_owned()],
            internal_date: 1_717_401_600,
            utc_offset_minutes: 120,
        });
        self
    }

    /// Adds `count` messages of about `bytes` each (a base64 attachment) to `folder`: enough of
    /// them fill the copy's pipelined groups by size rather than by count, and outgrow its
    /// memory budget.
    #[must_use]
    pub fn with_bulky(mut self, folder: &str, count: usize, bytes: usize) -> Corpus {
        let mut rng = XorShift::new(bytes as u64 ^ count as u64);
        for n in 0..count {
            let mut message = format!(
                "From: Bulk Sender <bulk@example.org>\r\nTo: alice@example.org\r\n\
                 Subject: bulky #{n}\r\nDate: Tue, 04 Jun 2024 10:00:00 +0200\r\n\
                 Message-ID: <bulky-{n}@corpus.mailplan.test>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: application/octet-stream\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            )
            .into_bytes();
            let raw: Vec<u8> = (0..bytes * 3 / 32)
                .flat_map(|_| rng.next().to_le_bytes())
                .collect();
            base64_lines(&raw, &mut message);
            self.messages.push(Message {
                folder: folder.to_owned(),
                bytes: message,
                flags: Vec::new(),
                internal_date: 1_717_488_000 + i64::try_from(n).unwrap_or(0),
                utc_offset_minutes: 120,
            });
        }
        self
    }

    /// The same messages, all in `folder` (the other folders stay, empty): one large folder,
    /// as many mailboxes are, whose copy the connection pairs share.
    #[must_use]
    pub fn all_in(mut self, folder: &str) -> Corpus {
        for m in &mut self.messages {
            folder.clone_into(&mut m.folder);
        }
        self
    }

    /// The same messages, each with `header` (a whole line, CRLF included) put first: what a
    /// server that rewrites what it stores, or another tool that marks what it copies (mbsync's
    /// `X-TUID`), leaves on a target. Same Message-IDs and header fields, other sizes.
    #[must_use]
    pub fn altered(&self, header: &str) -> Corpus {
        let mut altered = self.clone();
        for m in &mut altered.messages {
            m.bytes.splice(0..0, header.bytes());
        }
        altered
    }

    /// The same messages, every `every`-th without its Message-ID line (messages written by
    /// old clients, scripts and some mailing lists have none).
    #[must_use]
    pub fn without_message_ids(&self, every: usize) -> Corpus {
        let mut changed = self.clone();
        for m in changed.messages.iter_mut().step_by(every.max(1)) {
            let head = header_end(&m.bytes);
            if let Some(at) = find(&m.bytes[..head], b"\r\nMessage-ID:") {
                let end = at + 2 + find(&m.bytes[at + 2..], b"\r\n").unwrap_or(0);
                m.bytes.drain(at..end);
            }
        }
        changed
    }

    /// What Exchange stores for these messages: a message without Message-ID gets one of the
    /// server's, and its Subject refolded. Same other fields; other bytes and sizes.
    #[must_use]
    pub fn as_exchange_stores(&self) -> Corpus {
        let mut stored = self.clone();
        for (n, m) in stored.messages.iter_mut().enumerate() {
            let head = header_end(&m.bytes);
            if find(&m.bytes[..head], b"Message-ID:").is_some() {
                continue;
            }
            if let Some(at) = find(&m.bytes[..head], b"\r\nSubject: ") {
                m.bytes
                    .splice(at + 2..at + 11, b"Subject:\r\n ".iter().copied());
            }
            let id = format!("Message-ID: <{n:04}AM0PR01MB@eurprd01.prod.exchangelabs.com>\r\n");
            m.bytes.splice(0..0, id.bytes());
        }
        stored
    }

    /// The snapshot a server holding exactly this corpus gives.
    pub fn expected(&self) -> Multiset {
        let mut set = Multiset {
            folders: self.folders.iter().cloned().collect(),
            ..Multiset::default()
        };
        for m in &self.messages {
            set.insert(MessageKey::new(
                &m.folder,
                &m.bytes,
                &m.flags,
                m.internal_date,
            ));
        }
        set
    }

    /// Creates and subscribes the folders of `user` on `dovecot` and APPENDs every message.
    pub fn seed(&self, dovecot: &Dovecot, user: &str, password: &str) {
        self.seed_at(dovecot.imap_addr(), user, password);
    }

    /// [`Corpus::seed`] on any clear-text IMAP server.
    pub fn seed_at(&self, addr: SocketAddr, user: &str, password: &str) {
        self.seed_named(addr, user, password, &|folder| folder.to_owned());
    }

    /// [`Corpus::seed_at`] on a server that names folders otherwise (another separator, a
    /// namespace prefix): `name` turns a corpus folder into the server's name (UTF-8).
    pub fn seed_named(
        &self,
        addr: SocketAddr,
        user: &str,
        password: &str,
        name: &(dyn Fn(&str) -> String + Sync),
    ) {
        let encode_folder = |folder: &str| encode_folder(&name(folder));
        block_on(|| async move {
            let mut session = connect(addr, user, password).await;
            for folder in self.folders.iter().filter(|f| *f != "INBOX") {
                let wire = encode_folder(folder);
                // Seeding more mail into a seeded mailbox (a delta pass) finds the folders there.
                if let Err(e) = session.create(&wire).await {
                    assert!(
                        e.to_string().contains("ALREADYEXISTS"),
                        "CREATE {folder:?}: {e}"
                    );
                }
                session
                    .subscribe(&wire)
                    .await
                    .unwrap_or_else(|e| panic!("SUBSCRIBE {folder:?}: {e}"));
            }
            for m in &self.messages {
                let flags = format!("({})", m.flags.join(" "));
                let date = format!(
                    "\"{}\"",
                    format_internal_date(m.internal_date, m.utc_offset_minutes)
                );
                session
                    .append(
                        encode_folder(&m.folder),
                        Some(&flags),
                        Some(&date),
                        &m.bytes,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("APPEND to {:?}: {e}", m.folder));
            }
            session.logout().await.ok();
        });
    }
}

/// Places `bytes` in `folder` with flags and a date that suit the folder.
fn message_in(rng: &mut XorShift, folder: &str, bytes: Vec<u8>) -> Message {
    let mut flags = Vec::new();
    match folder {
        "Sent" => flags.push("\\Seen".to_owned()),
        "Drafts" => flags.push("\\Draft".to_owned()),
        _ if rng.below(2) == 0 => flags.push("\\Seen".to_owned()),
        _ => {}
    }
    for (flag, one_in) in [
        ("\\Flagged", 6),
        ("\\Answered", 5),
        ("$Label1", 8),
        ("project-x", 10),
    ] {
        if rng.below(one_in) == 0 {
            flags.push(flag.to_owned());
        }
    }
    // 2015-01-01 to 2025-01-01, in one of a few zones (servers may return another zone).
    let internal_date = 1_420_070_400 + i64::from(rng.below_u32(315_532_800));
    let utc_offset_minutes = [0, 60, 120, -300, 540, 330][rng.below(6)];
    Message {
        folder: folder.to_owned(),
        bytes,
        flags,
        internal_date,
        utc_offset_minutes,
    }
}

fn message_id(n: usize) -> String {
    format!("<{n}.corpus@corpus.mailplan.test>")
}

const SENDERS: [(&str, &str); 5] = [
    ("Alice Martin", "alice@example.org"),
    ("Élodie Müller", "elodie@example.fr"),
    ("Дмитрий Иванов", "dmitri@example.ru"),
    ("山田太郎", "taro@example.jp"),
    ("Bob", "bob@example.com"),
];

const SUBJECTS: [&str; 6] = [
    "Quarterly report",
    "Réunion — ordre du jour",
    "Отчёт за квартал",
    "会議のお知らせ",
    "Re: lunch?",
    "Facture n° 2024-017 (échéance)",
];

const WORDS: [&str; 16] = [
    "migration",
    "courriel",
    "boîte",
    "dossier",
    "письмо",
    "папка",
    "メール",
    "フォルダ",
    "the",
    "and",
    "IMAP",
    "serveur",
    "déjà",
    "naïve",
    "Grüße",
    "straße",
];

/// One RFC 5322 message: RFC 2047 display names and subjects, an 8-bit UTF-8 body, and on every
/// seventh message a small base64 attachment.
fn build_message(rng: &mut XorShift, n: usize, message_id: Option<String>) -> Vec<u8> {
    let (name, address) = SENDERS[rng.below(SENDERS.len())];
    let subject = SUBJECTS[rng.below(SUBJECTS.len())];
    let mut head = format!(
        "From: {} <{address}>\r\nTo: Alice Martin <alice@example.org>\r\nSubject: {} #{n}\r\n\
         Date: {}\r\n",
        encode_word(name),
        encode_word(subject),
        rfc5322_date(1_420_070_400 + i64::from(rng.below_u32(315_532_800))),
    );
    if let Some(id) = message_id {
        write!(head, "Message-ID: {id}\r\n").expect("write to a String");
    }
    head.push_str("MIME-Version: 1.0\r\n");
    let mut text = String::new();
    for _ in 0..=rng.below(30) {
        let words: Vec<&str> = (0..=rng.below(12))
            .map(|_| WORDS[rng.below(WORDS.len())])
            .collect();
        text.push_str(&words.join(" "));
        text.push_str("\r\n");
    }
    let mut bytes = Vec::new();
    if n % 7 == 6 {
        head.push_str("Content-Type: multipart/mixed; boundary=\"b-corpus\"\r\n\r\n");
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(
            b"--b-corpus\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Transfer-Encoding: 8bit\r\n\r\n",
        );
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(
            b"--b-corpus\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
              Content-Transfer-Encoding: base64\r\n\r\n",
        );
        let attachment: Vec<u8> = (0..64 + rng.below(512))
            .flat_map(|_| rng.next().to_le_bytes())
            .collect();
        base64_lines(&attachment, &mut bytes);
        bytes.extend_from_slice(b"--b-corpus--\r\n");
    } else {
        head.push_str(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    bytes
}

/// An RFC 2047 encoded word for non-ASCII text, the text itself otherwise.
fn encode_word(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut encoded = Vec::new();
    base64(text.as_bytes(), &mut encoded);
    format!("=?UTF-8?B?{}?=", String::from_utf8_lossy(&encoded))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `unix` as IMAP writes an INTERNALDATE (`03-Jun-2024 10:00:00 +0200`), in the zone
/// `utc_offset_minutes` east of UTC.
pub fn format_internal_date(unix: i64, utc_offset_minutes: i32) -> String {
    let local = unix + i64::from(utc_offset_minutes) * 60;
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    let seconds = local.rem_euclid(86_400);
    let sign = if utc_offset_minutes < 0 { '-' } else { '+' };
    let offset = utc_offset_minutes.unsigned_abs();
    format!(
        "{day:02}-{}-{year} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        MONTHS[month - 1],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        offset / 60,
        offset % 60
    )
}

/// `unix` as an RFC 5322 `Date:` header value in UTC.
fn rfc5322_date(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
        [usize::try_from(unix.div_euclid(86_400).rem_euclid(7)).expect("0..7")];
    let seconds = unix.rem_euclid(86_400);
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        MONTHS[month - 1],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, usize, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, usize::try_from(month).expect("1..=12"), day)
}

/// Standard base64 of `data` in CRLF-terminated lines of 76 characters (RFC 2045).
fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(57) {
        base64(chunk, out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Standard base64 of `data`, padded, appended to `out`.
fn base64(data: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// xorshift64*: tiny, deterministic, good enough to vary test data.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound as u64).expect("below a usize bound")
    }

    fn below_u32(&mut self, bound: u32) -> u32 {
        u32::try_from(self.next() % u64::from(bound)).expect("below a u32 bound")
    }
}

#[test]
fn dates_are_formatted_as_imap_and_rfc5322_write_them() {
    assert_eq!(
        format_internal_date(1_717_401_600, 120),
        "03-Jun-2024 10:00:00 +0200"
    );
    assert_eq!(format_internal_date(0, -300), "31-Dec-1969 19:00:00 -0500");
    assert_eq!(
        rfc5322_date(1_717_401_600),
        "Mon, 03 Jun 2024 08:00:00 +0000"
    );
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
    ] {
        let mut out = Vec::new();
        base64(plain.as_bytes(), &mut out);
        assert_eq!(out, encoded.as_bytes());
    }
}

/// Where the header ends (the blank line), or the whole message.
fn header_end(bytes: &[u8]) -> usize {
    find(bytes, b"\r\n\r\n").map_or(bytes.len(), |at| at + 2)
}

/// The first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
