//! chatmail-auth
