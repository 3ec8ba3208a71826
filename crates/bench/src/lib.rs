//! chatmail-bench
