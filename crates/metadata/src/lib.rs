//! chatmail-metadata
