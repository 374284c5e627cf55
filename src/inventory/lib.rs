//! k8sup-inventory (being written).
