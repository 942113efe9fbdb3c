//! Nothing to link: this crate holds `tests/cri.rs`, which runs Kubernetes' CRI path
//! (containerd's CRI plugin → `containerd-shim-runc-v2` → `peapod`) against a private
//! containerd. It is a crate of its own so that tonic and tokio stay out of peapod's
//! dependency tree.
