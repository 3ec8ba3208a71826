//! chatmail-config
