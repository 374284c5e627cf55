//! k8sup-ssh (being written).
