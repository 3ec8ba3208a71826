//! chatmail-milter
