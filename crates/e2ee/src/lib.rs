//! chatmail-e2ee
