//! Which source messages the target lacks (`difference`, `matching`): identities compared as
//! multisets, identity and size first, then identity alone (a server that reports other sizes
//! for what it was given), last the header fields of a message without Message-ID (a server
//! that gave it one of its own). Used by the copy (what to send) and by the verification (what
//! is missing). Pure: no I/O, unit-tested here.

use std::collections::HashMap;

use crate::providers::imap::identity::Identity;
use crate::providers::imap::pipelined::Listed;

/// One source message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wanted {
    pub(super) uid: u32,
    pub(super) size: u32,
}

/// The source messages missing from the target, counting identities as multisets: for an
/// identity the source has `k` times and the target `t` times, the last `k - t` source UIDs.
pub(super) fn difference<'a>(
    source: impl IntoIterator<Item = &'a Listed>,
    target: &[Listed],
) -> Vec<Wanted> {
    matching(source, target).0
}

/// [`difference`], and how many source messages were found on the target at another size.
/// Identity and size are matched first; what is left is matched by identity alone, so a server
/// that reports other sizes for what it was given (Exchange's estimated RFC822.SIZE, a copy
/// with a header added) is not sent everything again, while exact pairs are never taken by a
/// resized one. Last, a source message without Message-ID that is still unmatched is looked
/// for among the target messages still unmatched by its header fields: a server may give such
/// a message a Message-ID of its own (Exchange does), which then is the copy's identity.
pub(super) fn matching<'a>(
    source: impl IntoIterator<Item = &'a Listed>,
    target: &[Listed],
) -> (Vec<Wanted>, u64) {
    let mut exact: HashMap<(&Identity, u32), usize> = HashMap::new();
    for (_, size, id) in target {
        *exact.entry((id, *size)).or_default() += 1;
    }
    let mut left = Vec::new();
    for (uid, size, id) in source {
        match exact.get_mut(&(id, *size)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => left.push((*uid, *size, id)),
        }
    }
    let mut loose: HashMap<&Identity, usize> = HashMap::new();
    for ((id, _), n) in exact {
        *loose.entry(id).or_default() += n;
    }
    let (mut unmatched, mut resized) = (Vec::new(), 0);
    for (uid, size, id) in left {
        match loose.get_mut(id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                resized += 1;
            }
            _ => unmatched.push((uid, size, id)),
        }
    }
    let mut by_fields: HashMap<u64, usize> = HashMap::new();
    if unmatched.iter().any(|(_, _, id)| !id.has_message_id()) {
        // The target messages left over: of an identity with `n` left, `n` of its messages.
        for (_, _, id) in target {
            if let Some(n) = loose.get_mut(id)
                && *n > 0
            {
                *n -= 1;
                *by_fields.entry(id.fields()).or_default() += 1;
            }
        }
    }
    let mut wanted = Vec::with_capacity(unmatched.len());
    for (uid, size, id) in unmatched {
        match by_fields.get_mut(&id.fields()) {
            Some(n) if *n > 0 && !id.has_message_id() => {
                *n -= 1;
                resized += 1;
            }
            _ => wanted.push(Wanted { uid, size }),
        }
    }
    (wanted, resized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        Identity::new(format!("Message-ID: {s}\r\n\r\n").as_bytes())
    }

    #[test]
    fn difference_counts_identities_as_multisets() {
        let source = vec![
            (1, 10, id("<a>")),
            (2, 10, id("<a>")),
            (3, 10, id("<b>")),
            (4, 10, id("<c>")),
        ];
        let target = vec![(7, 10, id("<a>")), (8, 10, id("<c>")), (9, 10, id("<z>"))];
        let uids: Vec<u32> = difference(&source, &target).iter().map(|w| w.uid).collect();
        assert_eq!(
            uids,
            vec![2, 3],
            "one <a> is there, the second is not; <b> is new"
        );
    }

    #[test]
    fn a_message_found_at_another_size_is_there_and_exact_pairs_come_first() {
        // Exchange reports estimated sizes: <a> and <b> are there, at other sizes.
        let source = vec![(1, 10, id("<a>")), (2, 12, id("<b>")), (3, 10, id("<c>"))];
        let target = vec![(7, 11, id("<a>")), (8, 40, id("<b>"))];
        assert_eq!(
            matching(&source, &target),
            (vec![Wanted { uid: 3, size: 10 }], 2)
        );
        // Two messages share an id: the exact pair is matched first, whatever the order, and
        // the other one is found at another size.
        let source = vec![(1, 10, id("<d>")), (2, 20, id("<d>"))];
        let target = vec![(5, 25, id("<d>")), (6, 10, id("<d>"))];
        assert_eq!(matching(&source, &target), (vec![], 1));
        // Counts still hold: one <d> on the target is one <d> found.
        let target = vec![(5, 10, id("<d>"))];
        assert_eq!(
            matching(&source, &target),
            (vec![Wanted { uid: 2, size: 20 }], 0)
        );
    }

    #[test]
    fn a_message_without_message_id_is_found_under_one_the_target_gave_it() {
        let fields = |subject: &str| format!("From: a@example.org\r\nSubject: {subject}\r\n");
        let plain = |subject: &str| Identity::new(format!("{}\r\n", fields(subject)).as_bytes());
        let given = |subject: &str, n: u32| {
            Identity::new(
                format!("Message-ID: <{n}@exchange>\r\n{}\r\n", fields(subject)).as_bytes(),
            )
        };
        // Exchange gave "one" and "two" a Message-ID; "three" is not there. <x> is a message
        // with its own Message-ID whose fields happen to be those of "four": it is taken by the
        // source's <x>, not by "four".
        let x = Identity::new(format!("Message-ID: <x>\r\n{}\r\n", fields("four")).as_bytes());
        let source = vec![
            (1, 10, plain("one")),
            (2, 10, plain("two")),
            (3, 10, plain("three")),
            (4, 10, x.clone()),
            (5, 10, plain("four")),
        ];
        let target = vec![
            (7, 60, given("one", 1)),
            (8, 60, given("two", 2)),
            (9, 10, x),
        ];
        assert_eq!(
            matching(&source, &target),
            (
                vec![Wanted { uid: 3, size: 10 }, Wanted { uid: 5, size: 10 }],
                2
            )
        );
        // A source message with a Message-ID is never matched by its fields alone.
        let source = vec![(1, 10, given("one", 5))];
        let target = vec![(7, 10, given("one", 6))];
        assert_eq!(
            matching(&source, &target),
            (vec![Wanted { uid: 1, size: 10 }], 0)
        );
    }
}
