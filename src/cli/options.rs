//! Mount options (placeholder, being written).
