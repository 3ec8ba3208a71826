//! chatmail-lastlogin
