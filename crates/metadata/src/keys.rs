//! The dict keys Dovecot 2.3 sends for IMAP METADATA, and which of them we
//! understand.
//!
//! Dovecot's `mail_attribute_dict` maps an attribute of a mailbox to the
//! dict key `priv/<mailbox-guid>/<name>` (for `/private/<name>`) or
//! `shared/<mailbox-guid>/<name>` (for `/shared/<name>`); see
//! `src/lib-storage/mailbox-attribute.h` and `index-attribute.c` in Dovecot
//! 2.3. Server attributes (IMAP mailbox `""`) are kept on INBOX with the
//! name prefixed by `vendor/vendor.dovecot/pvt/server/`. So:
//!
//! | IMAP | dict key |
//! |---|---|
//! | `SETMETADATA INBOX (/private/devicetoken x)` (what Delta Chat sends) | `priv/<inbox-guid>/devicetoken` |
//! | Lua `mailbox:metadata_set("/private/messagenew", "")` on INBOX | `priv/<inbox-guid>/messagenew` |
//! | Lua `mailbox:metadata_set("/private/nudge", "")` on INBOX | `priv/<inbox-guid>/nudge` |
//! | `GETMETADATA "" /shared/vendor/deltachat/irohrelay` | `shared/<inbox-guid>/vendor/vendor.dovecot/pvt/server/vendor/deltachat/irohrelay` |
//! | `SETMETADATA "" (/private/devicetoken x)` | `priv/<inbox-guid>/vendor/vendor.dovecot/pvt/server/devicetoken` (not understood, as in chatmaild) |
//!
//! The user (the login address) comes in the request's user field.

/// Key names under `priv/<guid>/`.
pub const DEVICETOKEN: &str = "devicetoken";
/// Set by the shipped Lua push script when mail arrives.
pub const MESSAGENEW: &str = "messagenew";
/// Set by the shipped Lua push script when mail a user sent to themselves
/// arrives: no push, but the post-delivery nudge (see [`crate::nudge`]).
pub const NUDGE: &str = "nudge";
/// Where server-level `/shared/vendor/deltachat/<name>` lands.
pub const SERVER_VENDOR_PREFIX: &str = "vendor/vendor.dovecot/pvt/server/vendor/deltachat/";

/// What a dict key means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// `priv/<guid>/devicetoken`: the user's notification tokens.
    DeviceToken,
    /// `priv/<guid>/messagenew`: new mail for the user.
    MessageNew,
    /// `priv/<guid>/nudge`: new mail the user sent to themselves.
    Nudge,
    /// `shared/<guid>/vendor/vendor.dovecot/pvt/server/vendor/deltachat/<name>`.
    ServerInfo(&'a str),
    /// Anything else.
    Other,
}

/// Classifies `key`. The GUID is not checked beyond being one non-empty path
/// segment: Dovecot computes it, and chatmaild ignores it too.
pub fn classify(key: &str) -> Key<'_> {
    if let Some(rest) = key.strip_prefix("priv/") {
        return match rest.split_once('/') {
            Some((guid, DEVICETOKEN)) if !guid.is_empty() => Key::DeviceToken,
            Some((guid, MESSAGENEW)) if !guid.is_empty() => Key::MessageNew,
            Some((guid, NUDGE)) if !guid.is_empty() => Key::Nudge,
            _ => Key::Other,
        };
    }
    if let Some(rest) = key.strip_prefix("shared/")
        && let Some((guid, name)) = rest.split_once('/')
        && !guid.is_empty()
        && let Some(info) = name.strip_prefix(SERVER_VENDOR_PREFIX)
        && !info.is_empty()
        && !info.contains('/')
    {
        return Key::ServerInfo(info);
    }
    Key::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_keys_dovecot_sends() {
        let guid = "43f5f508a7ea0366dff30200c15250e3";
        assert_eq!(
            classify(&format!("priv/{guid}/devicetoken")),
            Key::DeviceToken
        );
        assert_eq!(
            classify(&format!("priv/{guid}/messagenew")),
            Key::MessageNew
        );
        assert_eq!(classify(&format!("priv/{guid}/nudge")), Key::Nudge);
        assert_eq!(
            classify(&format!("shared/{guid}/{SERVER_VENDOR_PREFIX}irohrelay")),
            Key::ServerInfo("irohrelay")
        );
        for other in [
            "priv//devicetoken".to_owned(),
            format!("priv/{guid}/devicetoken/x"),
            format!("priv/{guid}/vendor/vendor.dovecot/pvt/server/devicetoken"),
            format!("shared/{guid}/devicetoken"),
            format!("shared/{guid}/nudge"),
            "priv//nudge".to_owned(),
            format!("shared/{guid}/{SERVER_VENDOR_PREFIX}"),
            format!("shared/{guid}/{SERVER_VENDOR_PREFIX}a/b"),
            format!("shared/{guid}/vendor/deltachat/irohrelay"),
            "shared/last-login/x@example.org".to_owned(),
            "devicetoken".to_owned(),
        ] {
            assert_eq!(classify(&other), Key::Other, "{other}");
        }
    }
}
