//! chatmail-policy
