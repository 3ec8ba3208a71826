//! dovecot-dict
