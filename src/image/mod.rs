//! Container-image tooling: layers, store, registry (being written).
