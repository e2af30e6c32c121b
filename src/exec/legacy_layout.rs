//! Where OVH's migration of a historical MX Plan account puts each source folder on Exchange, so
//! that `verify` compares the right folders (pure).
//!
//! OVH's tool lands the default folders under their Exchange names (`Sent` → `Sent Items`,
//! `Trash` → `Deleted Items`, `Junk`/`Spam` → `Junk Email`) and may put the other folders under
//! the Inbox (`Archive` → `INBOX/Archive`), as seen on real migrations (issue 14; not in the API
//! documentation). Entry point: [`target_of`]; [`expected_counts`] adds up what each target
//! folder must hold (two source folders can land in one).

use std::collections::BTreeMap;

use crate::providers::imap::folders::SpecialUse;

/// A default folder's role, from its top-level name (English and French spellings seen on MX
/// Plan webmails), and the name Exchange gives it.
fn role(source: &str) -> Option<(SpecialUse, &'static str)> {
    if source.contains('/') {
        return None;
    }
    let name = source.to_lowercase();
    let role = match name.as_str() {
        "sent" | "sent items" | "sent messages" | "sent mail" | "envoyés" | "éléments envoyés" => {
            (SpecialUse::Sent, "Sent Items")
        }
        "trash" | "deleted items" | "deleted messages" | "corbeille" | "éléments supprimés" => {
            (SpecialUse::Trash, "Deleted Items")
        }
        "junk" | "spam" | "junk email" | "junk e-mail" | "courrier indésirable" => {
            (SpecialUse::Junk, "Junk Email")
        }
        "drafts" | "brouillons" => (SpecialUse::Drafts, "Drafts"),
        _ => return None,
    };
    Some(role)
}

/// The target folder (logical path) that holds what the source folder `source` held, among the
/// target's folders (`path`, special use): a default folder by its role (the target's
/// special-use folder, else the Exchange name), another by its own path, else under the Inbox.
pub(crate) fn target_of<'a>(
    source: &str,
    targets: &'a [(String, Option<SpecialUse>)],
) -> Option<&'a str> {
    let find = |want: &str| {
        targets
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(want))
            .map(|(p, _)| p.as_str())
    };
    if source.eq_ignore_ascii_case("INBOX") {
        return find("INBOX");
    }
    if let Some((use_, exchange_name)) = role(source) {
        return targets
            .iter()
            .find(|(_, s)| *s == Some(use_))
            .map(|(p, _)| p.as_str())
            .or_else(|| find(exchange_name))
            .or_else(|| find(source));
    }
    find(source).or_else(|| find(&format!("INBOX/{source}")))
}

/// What each target folder must hold at least: the source counts added up by [`target_of`];
/// the source folders with no target folder under `None`.
pub(crate) fn expected_counts<'a>(
    before: &'a BTreeMap<String, u32>,
    targets: &'a [(String, Option<SpecialUse>)],
) -> BTreeMap<Option<&'a str>, (Vec<&'a str>, u32)> {
    let mut out: BTreeMap<Option<&str>, (Vec<&str>, u32)> = BTreeMap::new();
    for (source, n) in before {
        let entry = out.entry(target_of(source, targets)).or_default();
        entry.0.push(source);
        entry.1 += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Vec<(String, Option<SpecialUse>)> {
        [
            ("INBOX", None),
            ("INBOX/Archive", None),
            ("Sent Items", Some(SpecialUse::Sent)),
            ("Deleted Items", None),
            ("Junk Email", Some(SpecialUse::Junk)),
            ("Drafts", Some(SpecialUse::Drafts)),
            ("Projects", None),
        ]
        .into_iter()
        .map(|(p, s)| (p.to_owned(), s))
        .collect()
    }

    #[test]
    fn default_folders_go_to_their_exchange_names_others_where_they_landed() {
        let t = exchange();
        assert_eq!(target_of("INBOX", &t), Some("INBOX"));
        assert_eq!(target_of("Sent", &t), Some("Sent Items"));
        assert_eq!(target_of("trash", &t), Some("Deleted Items"), "by name");
        assert_eq!(target_of("Spam", &t), Some("Junk Email"), "by special use");
        assert_eq!(target_of("Brouillons", &t), Some("Drafts"));
        assert_eq!(target_of("Archive", &t), Some("INBOX/Archive"));
        assert_eq!(
            target_of("Projects", &t),
            Some("Projects"),
            "same path first"
        );
        assert_eq!(target_of("Sent/2019", &t), None, "a subfolder has no role");
        assert_eq!(target_of("Missing", &t), None);
    }

    #[test]
    fn two_source_folders_with_one_exchange_name_add_up() {
        let t = exchange();
        let before: BTreeMap<String, u32> = [("Junk", 2), ("Spam", 3), ("INBOX", 4), ("Gone", 1)]
            .into_iter()
            .map(|(f, n)| (f.to_owned(), n))
            .collect();
        let expected = expected_counts(&before, &t);
        assert_eq!(expected[&Some("Junk Email")], (vec!["Junk", "Spam"], 5));
        assert_eq!(expected[&Some("INBOX")], (vec!["INBOX"], 4));
        assert_eq!(expected[&None], (vec!["Gone"], 1));
    }
}
