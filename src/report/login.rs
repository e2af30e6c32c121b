//! What `mailplan ovh login` shows once OVH granted a consumer key: the access rules asked for
//! and what to do next on stderr, the validation URL (and the key, unless it was saved to a
//! file) on stdout as `name=value` lines a script can read.
//!
//! Entry point: [`render`]. The key is written to stdout only when it was not to be saved, and
//! to nothing else.

use std::io::{self, Write};
use std::path::Path;

use crate::plan::secret::Secret;
use crate::providers::ovh::api::auth::AccessRule;

/// A consumer key OVH granted, and where it went.
#[derive(Debug)]
pub struct Granted<'a> {
    /// The API the key was requested on.
    pub base_url: &'a str,
    pub rules: &'a [AccessRule],
    /// The `ovh.conf` section of the endpoint.
    pub section: &'a str,
    pub validation_url: &'a str,
    pub consumer_key: &'a Secret,
    pub key_went: KeyWent<'a>,
}

/// Where the consumer key went.
#[derive(Debug, Clone, Copy)]
pub enum KeyWent<'a> {
    /// To stdout, for the user to store.
    Printed,
    /// Into this `ovh.conf` (`--save`).
    Stored(&'a Path),
    /// Nowhere: storing it in this `ovh.conf` failed, for this reason.
    NotStored(&'a Path, &'a str),
}

/// Write what `ovh login` says: explanations to `err`, data to `out`.
pub fn render(granted: &Granted<'_>, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
    writeln!(
        err,
        "Requested a consumer key on {} with these access rules:",
        granted.base_url
    )?;
    for rule in granted.rules {
        writeln!(err, "  {:<6} {}", rule.method, rule.path)?;
    }
    let section = granted.section;
    if let KeyWent::NotStored(path, error) = granted.key_went {
        return writeln!(
            err,
            "cannot store the consumer key in {}: {error}",
            path.display()
        );
    }
    if let KeyWent::Stored(path) = granted.key_went {
        writeln!(
            err,
            "\nThe consumer key is stored in {} under [{section}] (mode 0600). Open the URL \
             below, log in with the OVHcloud account that is admin and tech contact of the \
             services, and choose a validity period.\n",
            path.display()
        )?;
        writeln!(out, "validation_url={}", granted.validation_url)?;
        return Ok(());
    }
    writeln!(
        err,
        "\n1. Open the URL below, log in with the OVHcloud account that is admin and tech \
         contact of the services, and choose a validity period.\n2. Store the key, either in \
         the environment (export OVH_CONSUMER_KEY=...) or in ovh.conf (./ovh.conf, \
         ~/.ovh.conf or /etc/ovh.conf) under [{section}] as consumer_key=... (`--save PATH` \
         does that instead of printing it)\n"
    )?;
    writeln!(out, "validation_url={}", granted.validation_url)?;
    writeln!(out, "consumer_key={}", granted.consumer_key.expose())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(key_went: KeyWent<'_>) -> (String, String) {
        let key = Secret::new("CK-123");
        let rules = [AccessRule {
            method: "GET",
            path: "/email/mxplan/*",
        }];
        let granted = Granted {
            base_url: "https://eu.api.ovh.com/1.0",
            rules: &rules,
            section: "ovh-eu",
            validation_url: "https://example.test/validate",
            consumer_key: &key,
            key_went,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        render(&granted, &mut out, &mut err).expect("written");
        (
            String::from_utf8(out).expect("utf-8"),
            String::from_utf8(err).expect("utf-8"),
        )
    }

    #[test]
    fn data_goes_to_stdout_and_explanations_to_stderr() {
        let (out, err) = shown(KeyWent::Printed);
        assert_eq!(
            out,
            "validation_url=https://example.test/validate\nconsumer_key=CK-123\n"
        );
        assert!(err.contains("  GET    /email/mxplan/*\n"), "{err}");
        assert!(err.contains("under [ovh-eu]"), "{err}");
        assert!(!err.contains("CK-123"), "{err}");
    }

    #[test]
    fn a_saved_key_is_printed_nowhere() {
        let (out, err) = shown(KeyWent::Stored(Path::new("/tmp/ovh.conf")));
        assert_eq!(out, "validation_url=https://example.test/validate\n");
        assert!(
            err.contains("stored in /tmp/ovh.conf under [ovh-eu]"),
            "{err}"
        );
        assert!(!err.contains("CK-123") && !out.contains("CK-123"));
    }

    #[test]
    fn a_key_that_could_not_be_stored_is_printed_nowhere_either() {
        let (out, err) = shown(KeyWent::NotStored(Path::new("/ro/ovh.conf"), "read-only"));
        assert_eq!(out, "");
        assert!(err.contains("  GET    /email/mxplan/*\n"), "{err}");
        assert!(
            err.ends_with("cannot store the consumer key in /ro/ovh.conf: read-only\n"),
            "{err}"
        );
        assert!(!err.contains("CK-123"));
    }
}
