//! chatmail-sandbox
