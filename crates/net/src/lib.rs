//! chatmail-net
