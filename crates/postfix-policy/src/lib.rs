//! postfix-policy
