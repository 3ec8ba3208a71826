//! chatmail-expire
