//! k8sup-lab (being written).
