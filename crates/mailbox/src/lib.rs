//! chatmail-mailbox
